"""One DICOM file's header (never its pixels) as a :class:`DicomHeader`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from dlm_ml.data.imaging.dicom.errors import DicomError
from dlm_ml.data.imaging.dicom.geometry import orthonormal_axes
from dlm_ml.data.imaging.dicom.tags import _float, _floats, _gradient, _int, _text, bvalue_from_dataset

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"}
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR)
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, SEG, fiducials
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports
    "1.2.840.10008.5.1.4.1.1.481",  # radiotherapy objects
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated PDF/CDA
)
# Files with these suffixes are never DICOM; skipping them avoids forced parses.
_NOT_DICOM_SUFFIXES = (
    ".nii", ".nii.gz", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".json", ".txt", ".md",
    ".csv", ".tsv", ".bval", ".bvec", ".yaml", ".yml", ".py", ".png", ".jpg", ".jpeg", ".pdf",
    ".xml", ".html", ".zip",
)


@dataclass(frozen=True)
class DicomHeader:
    """What dlm_ml needs from one DICOM file's header (no pixel data).

    Geometry is in LPS millimetres: ``position`` is ImagePositionPatient (3,),
    ``orientation`` is ImageOrientationPatient (6,: row cosines then column
    cosines), ``pixel_spacing_mm`` is (row spacing, column spacing) as in DICOM.
    """

    path: Path
    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    modality: str
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    accession: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    acquisition_number: int | None = None
    echo_number: int | None = None
    temporal_position: int | None = None
    image_type: tuple[str, ...] = ()
    series_description: str = ""
    sequence_name: str = ""
    scanning_sequence: tuple[str, ...] = ()
    manufacturer: str = ""
    model: str = ""
    software: str = ""
    field_strength_t: float | None = None
    kernel: str = ""
    kvp: float | None = None
    contrast_agent: str = ""
    contrast_route: str = ""
    patient_position: str = ""
    frame_of_reference: str = ""
    rows: int = 0
    columns: int = 0
    n_frames: int = 1
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    spacing_between_slices_mm: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    padding_value: float | None = None
    padding_range_limit: float | None = None
    b_value: float | None = None
    b_value_source: str | None = None
    gradient: tuple[float, float, float] | None = None
    has_pixels: bool = True
    protocol_name: str = ""

    @property
    def is_image(self) -> bool:
        """True for pixel-bearing image objects (not SEG, RTSTRUCT, SR, DICOMDIR...)."""
        if not self.has_pixels or self.modality.upper() in _NON_IMAGE_MODALITIES:
            return False
        return not self.sop_class_uid.startswith(_NON_IMAGE_SOP_PREFIXES)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (3,) = row cosines × column cosines."""
        if self.orientation is None:
            raise DicomError(f"{self.path}: no ImageOrientationPatient")
        return orthonormal_axes(self.orientation)[2]



def header_from_dataset(ds: pydicom.Dataset, path: Path) -> DicomHeader:
    """Build a :class:`DicomHeader` from a pydicom dataset read from ``path``."""
    b, source = bvalue_from_dataset(ds)
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class and getattr(ds, "file_meta", None) is not None:
        sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
    return DicomHeader(
        path=path,
        sop_class_uid=sop_class,
        sop_uid=_text(ds, "SOPInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality").upper(),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        birth_date=_text(ds, "PatientBirthDate"),
        accession=_text(ds, "AccessionNumber"),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        acquisition_number=_int(ds, "AcquisitionNumber"),
        echo_number=_int(ds, "EchoNumbers"),
        temporal_position=_int(ds, "TemporalPositionIdentifier") or _int(ds, "TemporalPositionIndex"),
        image_type=tuple(v.upper() for v in _text(ds, "ImageType").split("\\") if v),
        series_description=_text(ds, "SeriesDescription"),
        sequence_name=_text(ds, "SequenceName"),
        scanning_sequence=tuple(v for v in _text(ds, "ScanningSequence").upper().split("\\") if v),
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        software=_text(ds, "SoftwareVersions"),
        field_strength_t=_float(ds, "MagneticFieldStrength"),
        kernel=_text(ds, "ConvolutionKernel"),
        kvp=_float(ds, "KVP"),
        contrast_agent=_text(ds, "ContrastBolusAgent"),
        contrast_route=_text(ds, "ContrastBolusRoute"),
        patient_position=_text(ds, "PatientPosition"),
        frame_of_reference=_text(ds, "FrameOfReferenceUID"),
        rows=_int(ds, "Rows") or 0,
        columns=_int(ds, "Columns") or 0,
        n_frames=_int(ds, "NumberOfFrames") or 1,
        position=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing_mm=_floats(ds, "PixelSpacing", 2),  # type: ignore[arg-type]
        slice_thickness_mm=_float(ds, "SliceThickness"),
        spacing_between_slices_mm=_float(ds, "SpacingBetweenSlices"),
        rescale_slope=_float(ds, "RescaleSlope") or 1.0,
        rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
        padding_value=_float(ds, "PixelPaddingValue"),
        padding_range_limit=_float(ds, "PixelPaddingRangeLimit"),
        b_value=b,
        b_value_source=source,
        gradient=_gradient(ds),
        # stop_before_pixels drops PixelData itself; Rows tells whether the object carries pixels.
        has_pixels="PixelData" in ds or bool(_int(ds, "Rows")),
        protocol_name=_text(ds, "ProtocolName"),
    )


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a DICOM file (with preamble, or a preamble-less dataset)."""
    path = Path(path)
    if not path.is_file() or path.name.lower().endswith(_NOT_DICOM_SUFFIXES):
        return False
    if _has_preamble(path):
        return True
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["SOPClassUID", "SeriesInstanceUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return bool(_text(ds, "SOPClassUID")) and bool(_text(ds, "SeriesInstanceUID"))


def read_header(path: str | os.PathLike) -> DicomHeader | None:
    """Read one file's header; ``None`` when the file is not DICOM.

    Raises :class:`DicomError` (naming the file) when the file announces itself
    as DICOM (``DICM`` preamble) but cannot be parsed.
    """
    path = Path(path)
    if path.name.lower().endswith(_NOT_DICOM_SUFFIXES):
        return None
    preamble = _has_preamble(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not preamble)
    except Exception as err:  # noqa: BLE001 - pydicom raises many exception types on garbage
        if preamble:
            raise DicomError(f"{path}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        return None
    if not preamble and not (_text(ds, "SOPClassUID") and _text(ds, "SeriesInstanceUID")):
        return None
    header = header_from_dataset(ds, path)
    if not header.series_uid:
        raise DicomError(f"{path}: DICOM file without SeriesInstanceUID")
    return header
