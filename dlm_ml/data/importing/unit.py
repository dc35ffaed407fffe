"""Importing one ``(patient_id, timepoint)``: its CT (HU) and its ADC map (µm²/s), with sidecars.

ADC comes from the scanner's map when there is one (``adc_source="scanner"``, the default) or
is fitted from the diffusion series (:mod:`dlm_ml.data.imaging.adc`) when asked or when no map
exists; each choice is recorded in the sidecar. A scanner map's units are inferred from the
median of its positive voxels.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dlm_ml import __version__
from dlm_ml.data.imaging import adc as adc_fit
from dlm_ml.data.imaging import dicom
from dlm_ml.data.importing.mapping import ImportProblem, StudyRow
from dlm_ml.data.importing.output import (
    IMPORT_FORMAT_VERSION,
    clean_image,
    manifest_path,
    rounded,
    write_json,
    write_visit_image,
)
from dlm_ml.data.importing.studies import Candidate, candidates, geometry_groups, pick_ct
from dlm_ml.utils.hashing import payload_digest

PLAUSIBLE_ADC_UM2_S = (100.0, 4000.0)  # median over positive voxels of a body ADC map


def _warn(message: str) -> None:
    print(f"dlm-import: {message}", file=sys.stderr)


@dataclass
class Options:
    """How ADC is made: ``adc_source`` (``scanner`` or ``computed``), the lowest b-value of a fit
    (s/mm²), the fit's weighting and its signal noise floor (``None``: estimated)."""

    adc_source: str = "scanner"
    adc_min_b: float = 0.0
    adc_weighting: str = adc_fit.DEFAULT_WEIGHTING
    adc_noise_floor: float | None = None

    def key(self, rows: list[StudyRow]) -> str:
        """Fingerprint of what determines a unit's output (no UIDs or paths)."""
        payload = {
            "format": IMPORT_FORMAT_VERSION,
            "adc": [self.adc_source, self.adc_min_b, self.adc_weighting, self.adc_noise_floor],
            "rows": sorted((r.ct_series_number or -1, r.adc_series_number or -1, r.adc_source) for r in rows),
            "n_rows": len(rows),
        }
        return payload_digest(payload)


def acquisition_facts(h: dicom.DicomHeader, geo: dicom.Geometry) -> dict:
    """Sidecar facts of the acquisition an image came from: vendor, model, field strength,
    grid (size, spacing in mm, LPS origin in mm, direction), and for CT kernel, kVp and the
    contrast phase where the tags state it. No identifier, no UID, no path."""
    facts = {
        "source_format": "DICOM",
        "source_modality": h.modality,
        "vendor": h.manufacturer or None,
        "model": h.model or None,
        "software_versions": h.software or None,
        "field_strength_t": rounded(h.field_strength_t),
        "image_type": list(h.image_type),
        "patient_position": h.patient_position or None,
        "size": list(geo.size),
        "spacing_mm": [rounded(v, 5) for v in geo.spacing_mm],
        "origin_lps_mm": [rounded(v, 4) for v in geo.origin_mm],
        "direction": [rounded(v, 6) for v in geo.direction],
        "slice_thickness_mm": rounded(h.slice_thickness_mm),
        "spacing_between_slices_mm": rounded(geo.spacing_mm[2], 5),
    }
    if h.modality == "CT":
        facts.update(
            convolution_kernel=h.kernel or None,
            kvp=rounded(h.kvp),
            contrast_agent_stated=bool(h.contrast_agent or h.contrast_route),
            contrast_phase=dicom.contrast_phase(h),
        )
    return facts


def adc_scale(image: sitk.Image, label: str) -> tuple[float, str]:
    """Factor to µm²/s for a scanner ADC map, from the median of its positive voxels."""
    arr = sitk.GetArrayViewFromImage(image)
    positive = arr[arr > 0]
    if positive.size == 0:
        raise ImportProblem(f"{label}: scanner ADC map is empty")
    m = float(np.median(positive))
    if 200 <= m <= 5000:
        return 1.0, "1e-6 mm2/s (um2/s)"
    if 0.2 <= m <= 5:
        return 1e3, "1e-3 mm2/s"
    if 2e-4 <= m <= 5e-3:
        return 1e6, "mm2/s"
    raise ImportProblem(f"{label}: cannot tell the units of the scanner ADC map (median of positive voxels {m:g})")


def _ct_image(cands: list[Candidate], label: str, base: dict) -> tuple[sitk.Image, dict]:
    """The chosen CT (int16 HU when lossless, padding set to ``CT_OUTSIDE_FOV_HU``) and its sidecar."""
    chosen, reason = pick_ct(cands, label)
    info: dict = {}
    image = chosen.volume.read(info=info)
    side = dict(base, modality="ct", units="HU", **acquisition_facts(chosen.header, chosen.volume.geometry))
    side.update(
        ct_outside_fov_value_hu=dicom.CT_OUTSIDE_FOV_HU,
        ct_outside_fov_voxels=int(info.get("ct_outside_fov_voxels", 0)),
        selection={"n_candidates": len(cands), "reason": reason},
    )
    return clean_image(image), side


@dataclass
class AdcChoice:
    """Where a visit's ADC comes from: ``use`` is ``scanner``, ``computed`` or ``None`` (no ADC)."""

    use: str | None
    requested: str
    scanner: list[Candidate]
    dwi: list[Candidate] | None
    note: str | None = None


def _choose_adc(cands: dict[str, list[Candidate]], broken_dwi: list[str], rows: list[StudyRow], opts: Options,
                label: str) -> AdcChoice:
    scanner = cands.get("adc", [])
    dwi_groups = [g for g in geometry_groups(cands.get("dwi", [])) if len({c.volume.b_value for c in g}) >= 2]
    requested = next((r.adc_source for r in rows if r.adc_source), "") or opts.adc_source
    forced_adc = [r.adc_series_number for r in rows if r.adc_series_number is not None]
    if forced_adc:
        scanner = [c for c in scanner if c.series_number in forced_adc]
        if len(scanner) != 1:
            raise ImportProblem(f"{label}: adc_series_number {forced_adc[0]} matches {len(scanner)} ADC series")
    # Prefer the diffusion acquisition on the scanner map's grid, then the one with most b-values.
    dwi = None
    if dwi_groups:
        def dwi_rank(g: list[Candidate]) -> tuple:
            on_map = any(s.volume.geometry.matches(g[0].volume.geometry) for s in scanner)
            return (on_map, len({c.volume.b_value for c in g}), sum(c.volume.n_slices for c in g))

        dwi_groups.sort(key=dwi_rank, reverse=True)
        dwi = dwi_groups[0]
    if len(scanner) > 1:
        on_grid = [s for s in scanner if dwi and s.volume.geometry.matches(dwi[0].volume.geometry)]
        if len(on_grid) == 1:
            scanner = on_grid
        else:
            found = "; ".join(c.describe() for c in scanner)
            raise ImportProblem(f"{label}: several scanner ADC maps ({found}); set adc_series_number in the mapping")

    if broken_dwi and (requested == "computed" or not scanner):
        raise ImportProblem("\n".join(broken_dwi))
    if requested == "computed" and dwi:
        return AdcChoice("computed", requested, scanner, dwi)
    if scanner:
        note = ("computed ADC requested but no diffusion series with two or more b-values on one grid"
                if requested == "computed" else None)
        return AdcChoice("scanner", requested, scanner, dwi, note)
    if dwi:
        note = ("scanner ADC requested but the study holds no ADC map; computed from the diffusion series"
                if requested == "scanner" else None)
        return AdcChoice("computed", requested, scanner, dwi, note)
    return AdcChoice(None, requested, scanner, dwi)


def _dwi_facts(dwi: list[Candidate]) -> dict:
    """b-values (s/mm²), the tags each came from, volumes per b-value and how they were split."""
    bs = sorted({float(c.volume.b_value) for c in dwi})  # type: ignore[arg-type]
    sources: dict[str, list[str]] = defaultdict(list)
    directions: dict[str, int] = defaultdict(int)
    for c in dwi:
        key = f"{float(c.volume.b_value):g}"
        directions[key] += 1
        for s in c.volume.b_value_sources:
            if s not in sources[key]:
                sources[key].append(s)
    return {
        "b_values_s_mm2": bs,
        "b_value_sources": dict(sources),
        "volumes_per_b_value": dict(directions),
        "dwi_split_by": sorted({c.volume.split_by for c in dwi}),
    }


def _adc_image(choice: AdcChoice, base: dict, opts: Options, label: str,
               warn: Callable[[str], None]) -> tuple[sitk.Image, dict]:
    """The visit's ADC map in µm²/s (float32) and its sidecar."""
    scanner, dwi = choice.scanner, choice.dwi
    side = dict(base, modality="adc", units="um2/s (1e-6 mm2/s)", adc_source=choice.use,
                adc_source_requested=choice.requested)
    side["adc_alternative_available"] = bool(scanner) and bool(dwi)
    if choice.note:
        side["adc_source_note"] = choice.note
    dwi_info = _dwi_facts(dwi) if dwi else {}
    if choice.use == "scanner":
        chosen = scanner[0]
        raw = chosen.volume.read()
        scale, units = adc_scale(raw, label)
        image = sitk.Cast(raw, sitk.sitkFloat32) * scale
        side.update(acquisition_facts(chosen.header, chosen.volume.geometry))
        side.update(adc_scanner_units_inferred=units, adc_scale_to_um2_s=scale)
        if dwi_info:
            side.update(dwi_info)
        elif chosen.header.b_value is not None:
            # Vendors put the highest b-value of the fit on the map itself.
            side.update(b_value_on_adc_map_s_mm2=rounded(chosen.header.b_value), b_value_sources={
                f"{chosen.header.b_value:g}": [chosen.header.b_value_source]})
    else:
        assert dwi is not None
        dwi_set = dicom.load_dwi([c.volume for c in dwi])
        try:
            image, fit = adc_fit.fit_adc(dwi_set.trace(), weighting=opts.adc_weighting, min_b_value=opts.adc_min_b,
                                         noise_floor=opts.adc_noise_floor)
        except ValueError as err:
            raise ImportProblem(f"{label}: ADC fit: {err}") from err
        side.update(acquisition_facts(dwi[0].header, dwi[0].volume.geometry))
        side.update(dwi_info)
        side["adc_fit"] = fit.as_dict()
        if scanner and scanner[0].volume.geometry.matches(dwi[0].volume.geometry):
            scanner_image = scanner[0].volume.read()
            scale, _ = adc_scale(scanner_image, label)
            ref = sitk.GetArrayFromImage(scanner_image).astype(np.float64)
            calc = sitk.GetArrayFromImage(image)
            mask = (calc > 0) & (ref > 0)
            if mask.sum() >= 3:
                agreement = adc_fit.compare_adc(calc, ref * scale, mask)
                side["adc_agreement_with_scanner_map"] = {k: rounded(v) for k, v in agreement.items()}
    values = sitk.GetArrayViewFromImage(image)
    median = float(np.median(values[values > 0])) if (values > 0).any() else 0.0
    side["adc_median_positive_um2_s"] = rounded(median, 1)
    if not PLAUSIBLE_ADC_UM2_S[0] <= median <= PLAUSIBLE_ADC_UM2_S[1]:
        # Not fatal (a phantom or an odd protocol may do this) but worth a look.
        side["adc_warning"] = "median ADC outside the plausible tissue range"
        warn(f"warning: {label}: median ADC {median:.4g} um2/s is outside "
             f"{PLAUSIBLE_ADC_UM2_S[0]:g}-{PLAUSIBLE_ADC_UM2_S[1]:g}")
    return clean_image(image, sitk.sitkFloat32), side


def import_unit(pid: str, tp: str, rows: list[StudyRow], out: Path, opts: Options,
                warn: Callable[[str], None] = _warn) -> dict:
    """Import one ``(patient_id, timepoint)``; returns its manifest. Raises :class:`ImportProblem`.

    The CT is written before the ADC is chosen, and the manifest last: a unit that fails
    half-way is unfinished (re-imported on the next run) but keeps what was written."""
    label = f"{pid}/{tp}"
    done = manifest_path(out, pid, tp)
    if done.exists():
        done.unlink()  # from here on the unit is unfinished until rewritten
    problems: dict[str, list[str]] = defaultdict(list)
    cands = candidates(rows, problems, label)
    # A broken CT or ADC series is always a problem; a broken diffusion series only
    # when ADC has to be computed from it (checked in _choose_adc).
    if problems["ct"] or problems["adc"]:
        raise ImportProblem("\n".join(problems["ct"] + problems["adc"]))
    base = {"dlm_ml_version": __version__, "import_format": IMPORT_FORMAT_VERSION, "patient_id": pid, "timepoint": tp}
    written: list[dict] = []
    if cands.get("ct"):
        image, side = _ct_image(cands["ct"], label, base)
        written.append(write_visit_image(out, pid, tp, "ct", image, side))
    choice = _choose_adc(cands, problems["dwi"], rows, opts, label)
    if choice.use is not None:
        image, side = _adc_image(choice, base, opts, label, warn)
        written.append(write_visit_image(out, pid, tp, "adc", image, side))
    if not written:
        kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(cands.items())) or "no usable image series"
        raise ImportProblem(f"{label}: no CT or ADC could be made (found: {kinds})")
    manifest = {"patient_id": pid, "timepoint": tp, "options_key": opts.key(rows), "images": written}
    write_json(done, manifest)
    return manifest
