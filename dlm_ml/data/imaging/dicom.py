"""DICOM series discovery, splitting, tag reading and volume reading.

A PACS export mixes series, and a single series may hold several volumes
(Siemens writes every b-value of a diffusion acquisition into one series; GE
writes b0 and each gradient direction as repeated stacks). SimpleITK's
``GetGDCMSeriesFileNames`` + ``ImageSeriesReader`` then silently stack all
files into one wrong volume (mixed b-values, bogus slice spacing, flipped
slice axis). This module therefore:

1. reads headers with pydicom (:func:`scan_dicom`), never pixel data;
2. groups files by ``SeriesInstanceUID`` (:func:`group_series`);
3. splits each series into volumes (:func:`split_series`): by orientation and
   matrix size, then by b-value, then, where a slice position still repeats,
   by gradient direction / echo / temporal position / acquisition number or
   finally by acquisition order (instance number);
4. reads one volume (:meth:`DicomVolume.read`) with SimpleITK for the pixels
   (GDCM decodes compressed transfer syntaxes and applies the HU rescale) but
   sets origin, spacing and direction itself from ``ImagePositionPatient`` and
   ``ImageOrientationPatient``, sorted along the slice normal. Slice spacing
   comes from the positions, never from ``SliceThickness`` (they differ for
   gapped or overlapping reconstructions).

:func:`read_dicom_series` refuses (with :class:`AmbiguousDicomError`, naming the
folder and listing what it found) any folder that does not hold exactly one
volume, instead of returning the naive stacked read.

CT padding: CT scanners mark pixels outside the reconstruction field of view
with a padding value (``PixelPaddingValue``, commonly -2000 stored = -3024 HU, or
-3024 / -2048 HU without the tag). Those pixels are *outside the body*, not air.
:func:`replace_ct_padding` sets them to :data:`CT_OUTSIDE_FOV_HU` (-1024 HU) so
that they do not enter intensity statistics as impossible values; the number
of replaced voxels is reported in the importer's sidecar.

b-values (:func:`bvalue_from_dataset`), in order of trust:

1. public ``(0018,9087) DiffusionBValue``;
2. GE private ``(0043,1039)`` first value (GE adds 1e9 on some software
   versions, so the value is taken modulo 1e9); only trusted for EPI series,
   because the same slot holds unrelated integers on non-diffusion GE series;
3. Siemens private ``(0019,100C) B_value``, including the VR OB form
   (``b'400 '``) that anonymisers produce;
4. Philips private ``(2001,1003)`` diffusion b-factor;
5. Siemens ``SequenceName`` such as ``*ep_b400t`` or ``*ep_b1000#2``.

The source used is returned with the value (e.g. ``"siemens_private_0019_100c"``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

# Value given to CT voxels outside the reconstructed field of view (HU). Chosen
# equal to the usual air floor so that windowing is unaffected; downstream code
# must not read it as tissue. Documented in docs/importing.md.
CT_OUTSIDE_FOV_HU = -1024
# Anything at or below this (HU) cannot be a patient or air voxel (air is about
# -1000 HU, noise rarely goes below -1200), so it is scanner padding.
CT_PADDING_THRESHOLD_HU = -2000

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
_MAX_ZIP_BYTES = 8 * 1024**3  # refuse zip bombs

# Private tag blocks: (group, element offset, private creator, vendor word).
_GE_BVALUE = (0x0043, 0x39, "GEMS_PARM_01", "GE")
_SIEMENS_BVALUE = (0x0019, 0x0C, "SIEMENS MR HEADER", "SIEMENS")
_PHILIPS_BVALUE = (0x2001, 0x03, "Philips Imaging DD 001", "PHILIPS")
_GE_GRADIENT = ((0x0019, 0xBB), (0x0019, 0xBC), (0x0019, 0xBD), "GEMS_ACQU_01")

BVALUE_SOURCES: tuple[str, ...] = (
    "public_0018_9087",
    "ge_private_0043_1039",
    "siemens_private_0019_100c",
    "philips_private_2001_1003",
    "siemens_sequence_name_0018_0024",
)
# Siemens diffusion sequence names: *ep_b400t, *ep_b1000#3, *re_b800t (RESOLVE).
# '*ep_b50_800' (ADC / calculated images) names a b-range and must not match.
_SEQ_B_RE = re.compile(r"_b(\d+)(?:t|#\d+)?\s*$")
_SEQ_B_RANGE_RE = re.compile(r"_b\d+_\d+")


class DicomError(ValueError):
    """A DICOM input cannot be read as asked; the message names the file or folder."""


class AmbiguousDicomError(DicomError):
    """A folder holds more than one series or volume where one was expected."""


# --------------------------------------------------------------------------- headers


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


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _float(ds: pydicom.Dataset, keyword: str) -> float | None:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = _float(ds, keyword)
    return None if value is None or not math.isfinite(value) else int(value)


def _floats(ds: pydicom.Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _raw_text(value: object) -> str:
    """Decode a tag value that may be bytes (VR OB/UN after anonymisation) to text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1", errors="ignore").replace("\x00", " ").strip()
    if isinstance(value, pydicom.multival.MultiValue) or isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _first_number(value: object) -> float | None:
    text = _raw_text(value)
    if not text:
        return None
    match = re.match(r"\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)", text.split("\\")[0])
    return float(match.group(1)) if match else None


def _private_value(ds: pydicom.Dataset, group: int, offset: int, creator: str, vendor: str):
    """Value of a private element located through its private creator.

    Falls back to the conventional block 0x10 when the creator element was
    stripped but the manufacturer matches (anonymisers sometimes do that).
    """
    for block in range(0x10, 0x100):
        creator_el = ds.get((group, block), None)
        if creator_el is None:
            continue
        if _raw_text(creator_el.value).upper() == creator.upper():
            el = ds.get((group, (block << 8) | offset), None)
            return None if el is None else el.value
    if vendor in _text(ds, "Manufacturer").upper():
        el = ds.get((group, 0x1000 | offset), None)
        return None if el is None else el.value
    return None


def _is_epi(ds: pydicom.Dataset) -> bool:
    scanning = _text(ds, "ScanningSequence").upper()
    return "EP" in scanning.split("\\") or "DIFF" in _text(ds, "ImageType").upper()


def bvalue_from_dataset(ds: pydicom.Dataset) -> tuple[float | None, str | None]:
    """Return ``(b_value_s_mm2, source)`` from a DICOM header, or ``(None, None)``.

    Sources are tried in the order of :data:`BVALUE_SOURCES` (most trusted first);
    see the module docstring for the vendor conventions.
    """
    value = ds.get((0x0018, 0x9087), None)
    if value is not None and value.value not in (None, b"", ""):
        b = _first_number(value.value)
        if b is not None:
            return b, "public_0018_9087"

    if _is_epi(ds):
        raw = _private_value(ds, *_GE_BVALUE)
        b = _first_number(raw) if raw is not None else None
        if b is not None:
            # GE adds 1e9 (and on some versions 1e9 multiples) to flag the value.
            return float(b % 1_000_000_000), "ge_private_0043_1039"

    raw = _private_value(ds, *_SIEMENS_BVALUE)
    b = _first_number(raw) if raw is not None else None
    if b is not None:
        return b, "siemens_private_0019_100c"

    raw = _private_value(ds, *_PHILIPS_BVALUE)
    b = _first_number(raw) if raw is not None else None
    if b is not None:
        return b, "philips_private_2001_1003"

    match = _SEQ_B_RE.search(_text(ds, "SequenceName"))
    if match:
        return float(match.group(1)), "siemens_sequence_name_0018_0024"
    return None, None


def _gradient(ds: pydicom.Dataset) -> tuple[float, float, float] | None:
    g = _floats(ds, "DiffusionGradientOrientation", 3)
    if g is not None:
        return g
    comps = []
    for group, element in _GE_GRADIENT[:3]:
        raw = _private_value(ds, group, element, _GE_GRADIENT[3], "GE")
        comps.append(_first_number(raw) if raw is not None else None)
    if all(c is not None for c in comps):
        return tuple(comps)  # type: ignore[return-value]
    return None


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
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPClassUID", "SeriesInstanceUID"])
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


# --------------------------------------------------------------------------- scanning


@dataclass
class ScanResult:
    """Outcome of :func:`scan_dicom`.

    ``origins`` maps each file extracted from a zip archive to the archive's path.
    """

    headers: list[DicomHeader] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    n_not_dicom: int = 0
    origins: dict[Path, Path] = field(default_factory=dict)


def _iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden entries are OS clutter (.DS_Store) or our own temporary files.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract the files of ``zip_path`` into ``dest`` under index-based names.

    Member names are not used as paths (no zip-slip, no overlong names); the
    returned paths keep the archive order.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    out: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > _MAX_ZIP_BYTES:
                raise DicomError(f"{zip_path}: archive expands beyond {_MAX_ZIP_BYTES >> 30} GiB; unzip it first")
            dest.mkdir(parents=True, exist_ok=True)
            for i, member in enumerate(members):
                target = dest / f"{i:06d}.dcm"
                with zf.open(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                out.append(target)
    except zipfile.BadZipFile as err:
        raise DicomError(f"{zip_path}: not a readable zip archive ({err})") from err
    return out


def scan_dicom(
    roots: str | os.PathLike | Iterable[str | os.PathLike],
    zip_workdir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ScanResult:
    """Read the headers of every DICOM file under ``roots`` (any nesting, any extension).

    Parameters
    ----------
    roots
        Folders and/or files.
    zip_workdir
        Where ``.zip`` archives found under ``roots`` are extracted (the caller
        owns and deletes it). ``None`` leaves zip archives alone.
    progress
        Show a tqdm bar over files.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    files: list[Path] = []
    result = ScanResult()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"DICOM input not found: {root}")
        for path in _iter_files(root):
            if path.name.lower().endswith(".zip") and zip_workdir is not None:
                try:
                    extracted = extract_zip(path, Path(zip_workdir) / f"zip{len(files):07d}")
                except DicomError as err:
                    result.problems.append(str(err))
                    continue
                files.extend(extracted)
                result.origins.update((p, path) for p in extracted)
            else:
                files.append(path)
    iterator: Iterable[Path] = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="reading DICOM headers", unit="file")
    for path in iterator:
        try:
            header = read_header(path)
        except DicomError as err:
            result.problems.append(str(err))
            continue
        if header is None:
            result.n_not_dicom += 1
        else:
            result.headers.append(header)
    return result


def group_series(headers: Iterable[DicomHeader]) -> dict[str, list[DicomHeader]]:
    """Group headers by SeriesInstanceUID, ordered by series number."""
    groups: dict[str, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[h.series_uid].append(h)
    order = sorted(groups, key=lambda uid: (groups[uid][0].series_number is None, groups[uid][0].series_number or 0))
    return {uid: groups[uid] for uid in order}


# --------------------------------------------------------------------------- volumes


@dataclass(frozen=True)
class Geometry:
    """Image grid in SimpleITK conventions (x, y, z order; LPS mm).

    ``direction`` is the row-major 3×3 matrix whose columns are the i, j, k axes.
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    def matches(self, other: Geometry, tol_mm: float = 1e-2, tol_dir: float = 1e-4) -> bool:
        """Same grid within tolerances (origin and spacing in mm, direction cosines)."""
        return (
            self.size == other.size
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm * 0.1)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=tol_dir)
        )


def image_geometry(image: sitk.Image) -> Geometry:
    """Geometry of a 3-D SimpleITK image."""
    return Geometry(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))


@dataclass
class DicomVolume:
    """One 3-D volume of a series: one file per slice, sorted along the slice normal.

    Attributes
    ----------
    headers
        Slice headers, ascending along the normal (row × column cosines).
    b_value
        Diffusion b-value in s/mm² (``None`` for non-diffusion images).
    b_value_sources
        Tag(s) the b-value came from.
    index
        Position of the volume in acquisition order within its series.
    split_by
        How the volume was separated from the rest of its series.
    """

    headers: list[DicomHeader]
    b_value: float | None = None
    b_value_sources: tuple[str, ...] = ()
    index: int = 0
    split_by: str = "series"
    _geometry: Geometry | None = field(default=None, repr=False)

    @property
    def first(self) -> DicomHeader:
        return self.headers[0]

    @property
    def n_slices(self) -> int:
        return len(self.headers)

    @property
    def folder(self) -> Path:
        return self.first.path.parent

    def describe(self) -> str:
        b = "" if self.b_value is None else f" b={self.b_value:g}"
        return f"volume {self.index}{b}: {self.n_slices} slices"

    @property
    def geometry(self) -> Geometry:
        """Validated grid computed from the headers (raises :class:`DicomError`)."""
        if self._geometry is None:
            self._geometry = _stack_geometry(self.headers)
        return self._geometry

    def read(self, info: dict | None = None) -> sitk.Image:
        """Read the pixels (HU rescale applied; CT padding replaced) on :attr:`geometry`."""
        return read_volume(self, info=info)


def orthonormal_axes(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal unit vectors (3,) from ImageOrientationPatient (6,).

    Scanners round the cosines, so row·col is often ~1e-5 instead of 0. Like
    ITK/GDCM (and hence NRRD/NIfTI written from them), the column cosine and the
    normal are kept and the row is recomputed as column × normal, so grids made
    here equal those of other tools to machine precision.
    """
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    row = np.cross(col, normal)
    row /= np.linalg.norm(row)
    return row, col, normal


def _stack_geometry(headers: Sequence[DicomHeader]) -> Geometry:
    first = headers[0]
    where = first.path.parent
    if first.orientation is None or first.position is None or first.pixel_spacing_mm is None:
        raise DicomError(f"{where}: slices lack ImagePositionPatient/ImageOrientationPatient/PixelSpacing")
    row, col, normal = orthonormal_axes(first.orientation)
    positions = np.array([h.position for h in headers], float)
    s = positions @ normal
    if len(headers) > 1:
        diffs = np.diff(s)
        if np.any(diffs <= 1e-4):
            raise DicomError(f"{where}: {int(np.sum(diffs <= 1e-4)) + 1} slices share a position; the series needs splitting")
        spacing_z = float((s[-1] - s[0]) / (len(s) - 1))
        tol = 0.01 * spacing_z + 1e-3
        if np.max(np.abs(diffs - spacing_z)) > tol:
            raise DicomError(
                f"{where}: slice spacing is not uniform ({diffs.min():.4g} to {diffs.max():.4g} mm); "
                "slices are missing or the folder mixes stacks"
            )
        delta = positions[-1] - positions[0]
        off_axis = delta - (delta @ normal) * normal
        if np.linalg.norm(off_axis) > 1e-3 * abs(delta @ normal) + 0.05:
            angle = math.degrees(math.atan2(np.linalg.norm(off_axis), abs(delta @ normal)))
            raise DicomError(
                f"{where}: slices are sheared ({angle:.2f}° between the slice normal and the stacking "
                "direction, e.g. CT gantry tilt); resample it to a rectilinear grid first (e.g. dcm2niix)"
            )
    else:
        spacing_z = first.spacing_between_slices_mm or first.slice_thickness_mm or 1.0
    for h in headers[1:]:
        if h.orientation is None or not np.allclose(h.orientation, first.orientation, atol=1e-4):
            raise DicomError(f"{where}: slices of one stack have different orientations")
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise DicomError(f"{where}: slices of one stack have different matrix sizes")
    # DICOM PixelSpacing is (between rows, between columns) = (y, x).
    dy, dx = first.pixel_spacing_mm
    direction = np.column_stack([row, col, normal]).ravel()
    return Geometry(
        size=(first.columns, first.rows, len(headers)),
        spacing_mm=(float(dx), float(dy), spacing_z),
        origin_mm=tuple(float(v) for v in positions[0]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction),
    )


def _orientation_key(h: DicomHeader) -> tuple:
    ori = None if h.orientation is None else tuple(round(v, 3) for v in h.orientation)
    return (ori, h.rows, h.columns)


def _position_key(h: DicomHeader) -> tuple:
    return tuple(round(v, 2) for v in h.position) if h.position is not None else ()


def _order_key(h: DicomHeader) -> tuple:
    return (h.instance_number if h.instance_number is not None else 1 << 30, str(h.path))


def _split_repeats(headers: list[DicomHeader]) -> tuple[list[list[DicomHeader]], str]:
    """Split headers whose slice positions repeat into one group per volume."""
    by_pos: dict[tuple, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        by_pos[_position_key(h)].append(h)
    counts = {len(v) for v in by_pos.values()}
    if counts == {1}:
        return [headers], "series"
    n_pos = len(by_pos)
    keyed = (
        ("gradient_direction", lambda h: None if h.gradient is None else tuple(round(g, 3) for g in h.gradient)),
        ("echo_number", lambda h: h.echo_number),
        ("temporal_position", lambda h: h.temporal_position),
        ("acquisition_number", lambda h: h.acquisition_number),
    )
    for name, key in keyed:
        groups: dict[object, list[DicomHeader]] = defaultdict(list)
        for h in headers:
            groups[key(h)].append(h)
        if len(groups) > 1 and None not in groups and all(
            len(g) == n_pos and len({_position_key(h) for h in g}) == n_pos for g in groups.values()
        ):
            ordered = sorted(groups.values(), key=lambda g: min(_order_key(h) for h in g))
            return ordered, name
    if len(counts) != 1:
        raise DicomError(
            f"{headers[0].path.parent}: slice positions repeat unevenly ({min(counts)} to {max(counts)} "
            "files per position); cannot tell the volumes apart"
        )
    # Same number of repeats at every position: the k-th file (in acquisition
    # order) at each position belongs to volume k.
    k = counts.pop()
    volumes: list[list[DicomHeader]] = [[] for _ in range(k)]
    for files in by_pos.values():
        for i, h in enumerate(sorted(files, key=_order_key)):
            volumes[i].append(h)
    volumes.sort(key=lambda g: min(_order_key(h) for h in g))
    return volumes, "acquisition_order"


def split_series(headers: Sequence[DicomHeader]) -> list[DicomVolume]:
    """Split one series' image headers into volumes (see the module docstring).

    Non-image objects (SEG, RTSTRUCT, SR...) are ignored. Returns volumes in
    acquisition order; each volume's headers are sorted along the slice normal.
    """
    images = [h for h in headers if h.is_image]
    if not images:
        return []
    multi = [h for h in images if h.n_frames > 1]
    if multi:
        raise DicomError(
            f"{multi[0].path}: enhanced multi-frame DICOM ({multi[0].n_frames} frames) is not supported; "
            "convert it to NIfTI (e.g. dcm2niix) or to single-frame DICOM first"
        )
    volumes: list[DicomVolume] = []
    by_orientation: dict[tuple, list[DicomHeader]] = defaultdict(list)
    for h in images:
        by_orientation[_orientation_key(h)].append(h)
    for stack in sorted(by_orientation.values(), key=lambda g: min(_order_key(h) for h in g)):
        by_b: dict[float | None, list[DicomHeader]] = defaultdict(list)
        for h in stack:
            by_b[h.b_value].append(h)
        for b in sorted(by_b, key=lambda v: (v is not None, v if v is not None else 0.0)):
            groups, how = _split_repeats(by_b[b])
            if len(by_b) > 1:
                how = "b_value" if how == "series" else f"b_value+{how}"
            for g in groups:
                if g[0].orientation is not None and g[0].position is not None:
                    n = g[0].normal
                    g = sorted(g, key=lambda h: float(np.dot(n, h.position)))
                else:
                    g = sorted(g, key=_order_key)
                sources = tuple(sorted({h.b_value_source for h in g if h.b_value_source}))
                volumes.append(DicomVolume(headers=g, b_value=b, b_value_sources=sources, split_by=how))
    volumes.sort(key=lambda v: min(_order_key(h) for h in v.headers))
    for i, v in enumerate(volumes):
        v.index = i
    return volumes


def describe_series(headers: Sequence[DicomHeader], volumes: Sequence[DicomVolume] | None = None) -> str:
    """One line describing a series for error messages (no UIDs)."""
    h = headers[0]
    label = f"series {h.series_number}" if h.series_number is not None else "a series"
    desc = f" '{h.series_description}'" if h.series_description else ""
    if volumes is None:
        try:
            volumes = split_series(headers)
        except DicomError as err:
            return f"{label} ({h.modality}{desc}, {len(headers)} files; cannot split: {err})"
    if not volumes:
        return f"{label} ({h.modality}{desc}, {len(headers)} non-image files)"
    bs = sorted({v.b_value for v in volumes if v.b_value is not None})
    if len(volumes) == 1:
        return f"{label} ({h.modality}{desc}): one volume of {volumes[0].n_slices} slices"
    detail = f"{len(volumes)} volumes"
    if bs:
        detail += f" with {len(bs)} b-value{'s' if len(bs) > 1 else ''} ({', '.join(f'{b:g}' for b in bs)} s/mm²)"
    per = sorted({v.n_slices for v in volumes})
    detail += f", {'/'.join(map(str, per))} slices each"
    return f"{label} ({h.modality}{desc}, {len(headers)} files): {detail}"


# --------------------------------------------------------------------------- reading


def replace_ct_padding(
    image: sitk.Image,
    padding_values_hu: Iterable[float] = (),
    padding_ranges_hu: Iterable[tuple[float, float]] = (),
    threshold_hu: float = CT_PADDING_THRESHOLD_HU,
    fill_hu: float = CT_OUTSIDE_FOV_HU,
) -> tuple[sitk.Image, int]:
    """Set CT padding (outside the reconstructed field of view) to ``fill_hu``.

    Padding is any voxel equal to one of ``padding_values_hu`` (the
    PixelPaddingValue tag, rescaled to HU), inside one of ``padding_ranges_hu``
    (PixelPaddingValue..PixelPaddingRangeLimit), or at or below ``threshold_hu``.

    Returns
    -------
    image, n_replaced
        A new image with the same pixel type and geometry, and the voxel count replaced.
    """
    arr = sitk.GetArrayFromImage(image)
    pad = arr <= threshold_hu
    for v in padding_values_hu:
        pad |= arr == v
    for lo, hi in padding_ranges_hu:
        pad |= (arr >= min(lo, hi)) & (arr <= max(lo, hi))
    n = int(pad.sum())
    if n == 0:
        return image, 0
    arr = arr.copy()
    arr[pad] = fill_hu
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out, n


def _padding_hu(headers: Sequence[DicomHeader]) -> tuple[set[float], set[tuple[float, float]]]:
    values: set[float] = set()
    ranges: set[tuple[float, float]] = set()
    for h in headers:
        if h.padding_value is None:
            continue
        v = h.padding_value * h.rescale_slope + h.rescale_intercept
        if h.padding_range_limit is not None:
            ranges.add((v, h.padding_range_limit * h.rescale_slope + h.rescale_intercept))
        else:
            values.add(v)
    return values, ranges


def read_volume(volume: DicomVolume, replace_padding: bool = True, info: dict | None = None) -> sitk.Image:
    """Read a :class:`DicomVolume` into a 3-D SimpleITK image in LPS space.

    Pixels come from SimpleITK/GDCM (rescale slope/intercept applied); origin,
    spacing and direction come from :attr:`DicomVolume.geometry`. CT padding is
    replaced by :data:`CT_OUTSIDE_FOV_HU` unless ``replace_padding`` is False,
    and CT is returned as int16 when that is lossless. When ``info`` is a dict,
    ``info["ct_outside_fov_voxels"]`` receives the number of replaced voxels.
    """
    geo = volume.geometry
    files = [str(h.path) for h in volume.headers]
    try:
        if len(files) == 1:
            image = sitk.ReadImage(files[0])
            if image.GetDimension() == 2:
                image = sitk.JoinSeries(image)
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
    except RuntimeError as err:
        raise DicomError(f"{volume.folder}: cannot read pixel data ({str(err).strip().splitlines()[-1]})") from err
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomError(f"{volume.folder}: colour/multi-component DICOM is not supported")
    if tuple(image.GetSize()) != geo.size:
        raise DicomError(f"{volume.folder}: pixel data size {image.GetSize()} differs from the headers {geo.size}")
    image.SetOrigin(geo.origin_mm)
    image.SetSpacing(geo.spacing_mm)
    image.SetDirection(geo.direction)
    # Drop the DICOM dictionary GDCM attaches (single-file reads), so that no
    # header value can travel on with the image into written files.
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    if volume.first.modality == "CT":
        if replace_padding:
            values, ranges = _padding_hu(volume.headers)
            image, n_padding = replace_ct_padding(image, values, ranges)
            if info is not None:
                info["ct_outside_fov_voxels"] = n_padding
        image = _to_int16_if_lossless(image)
    return image


def _to_int16_if_lossless(image: sitk.Image) -> sitk.Image:
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size and np.all(np.mod(arr, 1) == 0) and arr.min() >= -32768 and arr.max() <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return image


def volumes_in(path: str | os.PathLike, zip_workdir: str | os.PathLike | None = None) -> list[tuple[list[DicomHeader], list[DicomVolume]]]:
    """Scan ``path`` and return ``[(series_headers, volumes), ...]`` for image series."""
    scan = scan_dicom(path, zip_workdir=zip_workdir)
    if scan.problems:
        raise DicomError("; ".join(scan.problems))
    out = []
    for headers in group_series(scan.headers).values():
        vols = split_series(headers)
        if vols:
            out.append((headers, vols))
    return out


def read_dicom_series(path: str | os.PathLike) -> sitk.Image:
    """Read a folder (any nesting) or zip holding exactly one DICOM image volume.

    Raises
    ------
    AmbiguousDicomError
        The input holds several series, or one series with several volumes
        (b-values, gradient directions, phases); the message names the input
        and lists what was found. Split it with :func:`split_series`.
    DicomError
        No DICOM image, unreadable files, irregular slices.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DICOM input not found: {path}")
    with _maybe_unzipped(path) as folder:
        series = volumes_in(folder)
        if not series:
            raise DicomError(f"{path}: no DICOM image found")
        n_volumes = sum(len(v) for _, v in series)
        if n_volumes != 1:
            lines = "\n  ".join(describe_series(h, v) for h, v in series)
            what = f"{len(series)} series" if len(series) > 1 else "1 series"
            raise AmbiguousDicomError(
                f"{path} holds {what} with {n_volumes} volumes in all, not one image:\n  {lines}\n"
                "A naive one-volume read would mix them. Point to a single series/volume, or split it "
                "with dlm_ml.data.imaging.dicom.split_series (diffusion: dlm_ml.data.imaging.dicom.load_dwi)."
            )
        return series[0][1][0].read()


@contextlib.contextmanager
def _maybe_unzipped(path: Path) -> Iterator[Path]:
    if path.is_file() and path.name.lower().endswith(".zip"):
        with tempfile.TemporaryDirectory(prefix="dlm_ml_zip_") as tmp:
            extract_zip(path, tmp)
            yield Path(tmp)
    else:
        yield path


def read_dicom_file(path: str | os.PathLike) -> sitk.Image:
    """Read a single-file DICOM image (one slice) with header-derived geometry."""
    path = Path(path)
    header = read_header(path)
    if header is None:
        raise DicomError(f"{path}: not a DICOM file")
    if header.sop_class_uid == SEG_SOP_CLASS:
        raise DicomError(f"{path}: is a DICOM SEG; read it with dlm_ml.data.imaging.masks.load_mask")
    vols = split_series([header])
    if not vols:
        raise DicomError(f"{path}: DICOM object without image pixels ({header.modality})")
    return vols[0].read()


# --------------------------------------------------------------------------- diffusion


@dataclass
class DwiSet:
    """Diffusion volumes of one acquisition on one grid.

    ``volumes`` maps b-value (s/mm²) to the list of images acquired at it
    (several for several gradient directions). :meth:`trace` averages them.
    """

    volumes: dict[float, list[sitk.Image]]
    b_value_sources: dict[float, tuple[str, ...]]
    headers: list[DicomHeader]

    @property
    def b_values(self) -> list[float]:
        return sorted(self.volumes)

    def trace(self) -> dict[float, sitk.Image]:
        """Trace-weighted image per b-value: geometric mean over directions.

        The geometric mean makes ADC of the trace equal the mean of the
        directional ADCs (log-linear), i.e. the rotation-invariant mean diffusivity.
        """
        out: dict[float, sitk.Image] = {}
        for b, images in self.volumes.items():
            if len(images) == 1:
                out[b] = sitk.Cast(images[0], sitk.sitkFloat32)
                continue
            arrays = np.stack([sitk.GetArrayFromImage(im).astype(np.float64) for im in images])
            # A direction with zero signal makes the trace zero (noise floor), not NaN.
            positive = np.all(arrays > 0, axis=0)
            logs = np.log(np.where(arrays > 0, arrays, 1.0))
            gm = np.where(positive, np.exp(logs.mean(axis=0)), 0.0)
            img = sitk.GetImageFromArray(gm.astype(np.float32))
            img.CopyInformation(images[0])
            out[b] = img
        return out


def dwi_volumes(headers: Sequence[DicomHeader]) -> list[DicomVolume]:
    """Volumes with a b-value among ``headers`` (any number of series)."""
    out: list[DicomVolume] = []
    for series in group_series(headers).values():
        out.extend(v for v in split_series(series) if v.b_value is not None)
    return out


def load_dwi(source: str | os.PathLike | Sequence[DicomVolume]) -> DwiSet:
    """Read diffusion volumes (a DICOM folder, or volumes from :func:`dwi_volumes`).

    All volumes must share one grid; at least two distinct b-values are needed.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with _maybe_unzipped(path) as folder:
            scan = scan_dicom(folder)
            if scan.problems:
                raise DicomError("; ".join(scan.problems))
            return load_dwi(dwi_volumes(scan.headers))
    volumes = list(source)
    if not volumes:
        raise DicomError("no diffusion volumes (no b-value found in any header)")
    where = volumes[0].folder
    reference = volumes[0].geometry
    for v in volumes[1:]:
        if not v.geometry.matches(reference):
            raise DicomError(f"{where}: diffusion volumes lie on different grids; select one acquisition")
    images: dict[float, list[sitk.Image]] = defaultdict(list)
    sources: dict[float, set[str]] = defaultdict(set)
    headers: list[DicomHeader] = []
    for v in volumes:
        assert v.b_value is not None
        images[float(v.b_value)].append(v.read())
        sources[float(v.b_value)].update(v.b_value_sources)
        headers.extend(v.headers)
    if len(images) < 2:
        raise DicomError(f"{where}: only one b-value ({next(iter(images)):g} s/mm²); ADC needs at least two")
    return DwiSet(dict(images), {b: tuple(sorted(s)) for b, s in sources.items()}, headers)


# --------------------------------------------------------------------------- classification


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
        if _CALC_B_RE.search(desc) or _SEQ_B_RANGE_RE.search(h.sequence_name):
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
