"""Lesion and organ masks: DICOM SEG, NRRD (3D Slicer) and NIfTI label maps.

* :func:`read_seg` parses a DICOM Segmentation with pydicom: the frames, each
  frame's ``ReferencedSegmentNumber`` and ``ImagePositionPatient`` are placed
  on a regular grid in physical (LPS) space, one binary volume per segment.
  Frames are placed by position, not by frame order, and a SEG that covers
  only some slices of its source image is handled (missing slices are empty).
* :func:`load_mask` returns one label (a segment name such as ``"Liver"``, a
  segment number, or a label value) as a uint8 0/1 image, resampled with
  nearest neighbour onto a reference image when the grids differ.
* :func:`lesion_geometry` gives a lesion's centre (physical LPS mm, the mean of
  its voxel centres) and diameter.

Diameter (``method``):

* ``"equivalent_sphere"`` (default): diameter of the sphere with the mask's
  volume, ``(6 V / π)^(1/3)``; stable under resampling and segmentation noise.
* ``"max_extent"``: the largest distance between any two points of the mask
  taken as a union of voxel boxes (3-D Feret diameter, computed on the convex
  hull of the boundary voxels' corners). Closer to a radiologist's longest
  diameter; sensitive to single stray voxels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull

from dlm_ml.data.imaging.dicom import SEG_SOP_CLASS, DicomError, orthonormal_axes
from dlm_ml.data.imaging.imageio import read_image

DIAMETER_METHODS: tuple[str, ...] = ("equivalent_sphere", "max_extent")


class MaskError(ValueError):
    """A mask cannot be read or does not hold the requested label; names the file."""


@dataclass
class Segmentation:
    """A DICOM SEG on its own grid.

    Attributes
    ----------
    segments
        Segment number -> SegmentLabel.
    masks
        Segment number -> uint8 0/1 image (all on one grid, LPS).
    """

    segments: dict[int, str]
    masks: dict[int, sitk.Image]

    def number(self, label: int | str, where: str = "") -> int:
        """Segment number for a segment number or (case-insensitive) label."""
        if isinstance(label, (int, np.integer)) or (isinstance(label, str) and label.strip().isdigit()):
            n = int(label)
            if n in self.segments:
                return n
        else:
            matches = [n for n, name in self.segments.items() if name.strip().lower() == str(label).strip().lower()]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise MaskError(f"{where}: several segments are labelled {label!r}; use the segment number")
        available = ", ".join(f"{n}={name!r}" for n, name in sorted(self.segments.items()))
        raise MaskError(f"{where}: no segment {label!r}; segments: {available}")

    def label_image(self) -> sitk.Image:
        """uint16 label map (voxel = segment number); later segments win where they overlap."""
        numbers = sorted(self.masks)
        ref = self.masks[numbers[0]]
        out = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint16)
        for n in numbers:
            out[sitk.GetArrayViewFromImage(self.masks[n]) > 0] = n
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(ref)
        return img


def _seq_item(ds, keyword: str):
    seq = ds.get(keyword, None)
    return seq[0] if seq else None


def _frame_attr(per_frame, shared, seq_kw: str, attr: str):
    for group in (per_frame, shared):
        if group is None:
            continue
        item = _seq_item(group, seq_kw)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def read_seg(path: str | os.PathLike) -> Segmentation:
    """Parse a DICOM SEG into one binary volume per segment (see the module docstring)."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # noqa: BLE001
        raise MaskError(f"{path}: cannot read DICOM SEG ({err})") from err
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise MaskError(f"{path}: not a DICOM Segmentation (SOP class {ds.get('SOPClassUID', '?')})")
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001
        raise MaskError(f"{path}: cannot decode SEG pixel data ({err})") from err
    n_frames = int(ds.get("NumberOfFrames", 1))
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[0] != n_frames:
        raise MaskError(f"{path}: {frames.shape[0]} frames decoded, header says {n_frames}")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    if seg_type == "FRACTIONAL":
        max_value = float(ds.get("MaximumFractionalValue", 255))
        binary = frames.astype(np.float64) / max_value >= 0.5
    else:
        binary = frames > 0

    segments = {int(item.SegmentNumber): str(item.get("SegmentLabel", f"segment {item.SegmentNumber}"))
                for item in ds.SegmentSequence}
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frames = ds.get("PerFrameFunctionalGroupsSequence", None)
    if per_frames is None or len(per_frames) != n_frames:
        raise MaskError(f"{path}: PerFrameFunctionalGroupsSequence missing or not one item per frame")

    orientation = None
    positions, numbers = [], []
    spacing = thickness = between = None
    for per in per_frames:
        iop = _frame_attr(per, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = _frame_attr(per, shared, "PlanePositionSequence", "ImagePositionPatient")
        seg_no = _frame_attr(per, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if iop is None or ipp is None or seg_no is None:
            raise MaskError(f"{path}: a frame lacks orientation, position or ReferencedSegmentNumber")
        iop = np.array([float(v) for v in iop])
        if orientation is None:
            orientation = iop
        elif not np.allclose(iop, orientation, atol=1e-4):
            raise MaskError(f"{path}: frames have different orientations")
        positions.append([float(v) for v in ipp])
        numbers.append(int(seg_no))
        ps = _frame_attr(per, shared, "PixelMeasuresSequence", "PixelSpacing")
        if ps is not None:
            spacing = (float(ps[0]), float(ps[1]))
        st = _frame_attr(per, shared, "PixelMeasuresSequence", "SliceThickness")
        thickness = float(st) if st not in (None, "") else thickness
        sb = _frame_attr(per, shared, "PixelMeasuresSequence", "SpacingBetweenSlices")
        between = float(sb) if sb not in (None, "") else between
    if spacing is None:
        raise MaskError(f"{path}: no PixelSpacing in the functional groups")

    row, col, normal = orthonormal_axes(orientation)
    positions = np.asarray(positions)
    s = positions @ normal
    in_plane = positions - np.outer(s, normal)
    if np.max(np.abs(in_plane - in_plane[0])) > 0.05:
        raise MaskError(f"{path}: frames are not aligned in-plane; cannot form a regular grid")
    unique_s = np.unique(np.round(s, 3))
    if between is not None and between > 0:
        dz = between
    elif unique_s.size > 1:
        dz = float(np.min(np.diff(unique_s)))
    else:
        dz = thickness or 1.0
    s0 = float(unique_s.min())
    k = (s - s0) / dz
    if np.max(np.abs(k - np.round(k))) > 0.1:
        raise MaskError(f"{path}: frame positions are not on a regular {dz:g} mm grid")
    k = np.round(k).astype(int)
    nz = int(k.max()) + 1
    rows, cols = frames.shape[1:]
    origin = in_plane[0] + s0 * normal
    direction = np.column_stack([row, col, normal]).ravel()

    volumes = {n: np.zeros((nz, rows, cols), np.uint8) for n in segments}
    for f, (n, kk) in enumerate(zip(numbers, k)):
        if n not in volumes:
            raise MaskError(f"{path}: frame {f + 1} refers to segment {n}, absent from SegmentSequence")
        volumes[n][kk] |= binary[f].astype(np.uint8)
    masks = {}
    for n, arr in volumes.items():
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(tuple(float(v) for v in origin))
        img.SetSpacing((spacing[1], spacing[0], float(dz)))
        img.SetDirection(tuple(float(v) for v in direction))
        masks[n] = img
    return Segmentation(segments=segments, masks=masks)


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True when ``path`` is a DICOM Segmentation file."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"], force=True)
    except Exception:  # noqa: BLE001
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS


def slicer_segment_names(image: sitk.Image) -> dict[int, str]:
    """Label value -> name from 3D Slicer ``.seg.nrrd`` metadata (``SegmentN_Name``...)."""
    names: dict[int, str] = {}
    keys = set(image.GetMetaDataKeys())
    for key in keys:
        m = re.fullmatch(r"Segment(\d+)_Name", key)
        if not m:
            continue
        value_key = f"Segment{m.group(1)}_LabelValue"
        layer_key = f"Segment{m.group(1)}_Layer"
        if layer_key in keys and image.GetMetaData(layer_key).strip() not in ("", "0"):
            continue  # a multi-layer (overlapping) Slicer segmentation; layer >0 not supported
        if value_key in keys:
            names[int(image.GetMetaData(value_key))] = image.GetMetaData(key)
    return names


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    )


def resample_to(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a mask onto ``reference``'s grid (uint8, outside = 0)."""
    if _same_grid(mask, reference):
        out = sitk.Cast(mask, sitk.sitkUInt8)
    else:
        out = sitk.Resample(sitk.Cast(mask, sitk.sitkUInt8), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                            sitk.sitkUInt8)
    out.CopyInformation(reference)
    return out


def load_mask(
    path: str | os.PathLike,
    label: int | str | None = None,
    reference: sitk.Image | None = None,
) -> sitk.Image:
    """Read one label of a mask file as a uint8 0/1 image.

    Parameters
    ----------
    path
        DICOM SEG, or a label map that SimpleITK reads (NRRD, NIfTI, MHA).
    label
        SEG: segment label (e.g. ``"Liver"``) or number. Label map: integer
        value, or a segment name from 3D Slicer metadata. ``None``: every
        non-zero voxel (a SEG must then hold a single segment).
    reference
        When given, the mask is resampled (nearest neighbour) onto its grid.

    Raises
    ------
    MaskError
        Unreadable file, unknown label, or a label with no voxel (after resampling).
    """
    path = Path(path)
    if not path.exists():
        raise MaskError(f"mask not found: {path}")
    if is_dicom_seg(path):
        seg = read_seg(path)
        if label is None:
            if len(seg.segments) != 1:
                names = ", ".join(f"{n}={v!r}" for n, v in sorted(seg.segments.items()))
                raise MaskError(f"{path}: holds {len(seg.segments)} segments ({names}); say which (mask_label)")
            label = next(iter(seg.segments))
        mask = seg.masks[seg.number(label, str(path))]
    else:
        try:
            image = read_image(path)
        except (RuntimeError, ValueError, DicomError) as err:
            raise MaskError(f"{path}: cannot read mask ({err})") from err
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise MaskError(f"{path}: a mask must be a 3-D single-component label map, got {image.GetDimension()}-D")
        arr = sitk.GetArrayViewFromImage(image)
        if label is None:
            values = arr != 0
        else:
            if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
                names = slicer_segment_names(image)
                matches = [v for v, n in names.items() if n.strip().lower() == label.strip().lower()]
                if len(matches) != 1:
                    known = ", ".join(f"{v}={n!r}" for v, n in sorted(names.items())) or "none"
                    raise MaskError(f"{path}: no segment named {label!r}; named segments: {known}")
                value = matches[0]
            else:
                value = int(label)
            values = arr == value
        mask = sitk.GetImageFromArray(values.astype(np.uint8))
        mask.CopyInformation(image)
    if reference is not None:
        mask = resample_to(mask, reference)
    if not sitk.GetArrayViewFromImage(mask).any():
        where = " on the reference grid" if reference is not None else ""
        raise MaskError(f"{path}: label {label!r} has no voxel{where}")
    return mask


@dataclass(frozen=True)
class LesionGeometry:
    """Centre (LPS mm, shape (3,)), diameter (mm), volume (mm³) and voxel count of a mask."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    n_voxels: int
    method: str


def _index_to_physical(image: sitk.Image, idx_xyz: np.ndarray) -> np.ndarray:
    """``(n, 3)`` continuous indices (x, y, z) -> ``(n, 3)`` LPS mm."""
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    sp = np.asarray(image.GetSpacing())
    return np.asarray(image.GetOrigin()) + (idx_xyz * sp) @ d.T


def lesion_geometry(mask: sitk.Image, label: int = 1, method: str = "equivalent_sphere") -> LesionGeometry:
    """Centre and diameter of the voxels equal to ``label`` (see the module docstring)."""
    if method not in DIAMETER_METHODS:
        raise ValueError(f"method must be one of {DIAMETER_METHODS}, got {method!r}")
    arr = sitk.GetArrayViewFromImage(mask) == label
    n = int(arr.sum())
    if n == 0:
        raise MaskError(f"mask has no voxel with label {label}")
    zyx = np.argwhere(arr)
    centre = _index_to_physical(mask, zyx[:, ::-1].astype(np.float64).mean(axis=0, keepdims=True))[0]
    spacing = np.asarray(mask.GetSpacing())
    volume = n * float(np.prod(spacing))
    if method == "equivalent_sphere":
        diameter = (6.0 * volume / np.pi) ** (1.0 / 3.0)
    else:
        boundary = arr & ~ndimage.binary_erosion(arr)
        pts = np.argwhere(boundary)[:, ::-1].astype(np.float64)
        corners = np.array([[dx, dy, dz] for dx in (-0.5, 0.5) for dy in (-0.5, 0.5) for dz in (-0.5, 0.5)])
        phys = _index_to_physical(mask, (pts[:, None, :] + corners[None]).reshape(-1, 3))
        hull = phys[ConvexHull(phys).vertices]
        diameter = 0.0
        for start in range(0, len(hull), 512):  # chunked to bound memory
            block = hull[start : start + 512]
            d2 = ((block[:, None, :] - hull[None]) ** 2).sum(-1)
            diameter = max(diameter, float(np.sqrt(d2.max())))
    return LesionGeometry(tuple(float(v) for v in centre), float(diameter), volume, n, method)  # type: ignore[arg-type]
