"""What a series is (CT, ADC map, DWI, ...) and a CT's contrast phase, from tags only."""

from __future__ import annotations

import re
from collections.abc import Sequence

from dlm_ml.data.imaging.dicom.headers import DicomHeader
from dlm_ml.data.imaging.dicom.tags import SEQ_B_RANGE_RE

_ADC_DESC_RE = re.compile(r"(?<![A-Za-z])ADC(?![A-Za-z])|apparent\s+diffusion", re.IGNORECASE)
_EADC_RE = re.compile(r"\bE(XP)?[_ ]?ADC\b|exponential", re.IGNORECASE)
_CALC_B_RE = re.compile(r"CALC[_ ]?B|CALCULATED|COMPUTED|SYNTH", re.IGNORECASE)
_PARAM_MAP_TYPES = {"FA", "EADC", "EXP", "TENSOR", "COLFA", "ISOTROPIC_ADC_EXP"}


def classify_series(headers: Sequence[DicomHeader]) -> str:
    """Classify a series from its tags: ``ct``, ``adc``, ``dwi``, ``dwi_computed``,
    ``localizer``, ``other`` (e.g. T2) or ``non_image``.

    Folder names are never used. ADC: ImageType contains ADC, or the series
    description names it ('ADC', 'Apparent Diffusion Coefficient'; GE writes
    ADC maps as DERIVED\\SECONDARY\\PROCESSED). DWI: a b-value from any source
    (:func:`bvalue_from_dataset`). ``dwi_computed``: a calculated high-b image
    (Siemens CALC_BVAL, whose SequenceName names a b-range such as
    ``*ep_b50_800``); it is derived from the ADC and must not enter a fit.
    """
    images = [h for h in headers if h.is_image]
    if not images:
        return "non_image"
    h = images[0]
    itype = set(h.image_type)
    if itype & {"LOCALIZER", "SCOUT"}:
        return "localizer"
    if h.modality == "CT":
        return "ct"
    if h.modality != "MR":
        return "other"
    desc = h.series_description
    if "ADC" in itype or (_ADC_DESC_RE.search(desc) and not _EADC_RE.search(desc)):
        if itype & _PARAM_MAP_TYPES or _EADC_RE.search(desc):
            return "other"
        return "adc"
    if itype & _PARAM_MAP_TYPES:
        return "other"
    if any(x.b_value is not None for x in images):
        if _CALC_B_RE.search(desc) or SEQ_B_RANGE_RE.search(h.sequence_name):
            return "dwi_computed"
        return "dwi"
    return "other"


_PHASES = (
    ("non_contrast", re.compile(r"non[- ]?con|\bw/o\b|without|plain|nativ|unenhanced|pre[- ]?contrast|\bNC\b", re.I)),
    ("arterial", re.compile(r"arter|\bART\b|\bAP\b|late art", re.I)),
    ("portal_venous", re.compile(r"portal|\bPV\b|\bPVP\b|venous|\bVEN\b|\bVP\b", re.I)),
    ("delayed", re.compile(r"delay|equilib|late phase|\bDEL\b", re.I)),
)


def contrast_phase(header: DicomHeader) -> str:
    """Contrast phase of a CT series where the tags state it.

    Looks for phase words in SeriesDescription and ProtocolName; otherwise
    ``contrast_unspecified_phase`` when ContrastBolusAgent is filled, else
    ``unknown``. The description text itself is never stored.
    """
    text = f"{header.series_description} {header.protocol_name}"
    found = [name for name, rx in _PHASES if rx.search(text)]
    if len(found) == 1:
        return found[0]
    if header.contrast_agent or header.contrast_route:
        return "contrast_unspecified_phase"
    return "unknown"
