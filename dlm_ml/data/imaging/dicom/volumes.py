"""3-D volumes of a series: splitting it by orientation and matrix size, then b-value, then,
where a slice position still repeats, by gradient direction, echo, temporal position,
acquisition number or finally acquisition order; the grid of a volume from its slice positions
(never SliceThickness); reading its pixels onto that grid."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from dlm_ml.data.imaging.dicom.errors import DicomError
from dlm_ml.data.imaging.dicom.geometry import Geometry, orthonormal_axes
from dlm_ml.data.imaging.dicom.headers import DicomHeader
from dlm_ml.data.imaging.dicom.pixels import padding_hu, replace_ct_padding, to_int16_if_lossless


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
            self._geometry = stack_geometry(self.headers)
        return self._geometry

    def read(self, info: dict | None = None) -> sitk.Image:
        """Read the pixels (HU rescale applied; CT padding replaced) on :attr:`geometry`."""
        return read_volume(self, info=info)



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


def stack_geometry(headers: Sequence[DicomHeader]) -> Geometry:
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
            raise DicomError(f"{where}: {int(np.sum(diffs <= 1e-4)) + 1} slices share a position; "
                             "the series needs splitting")
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
            values, ranges = padding_hu(volume.headers)
            image, n_padding = replace_ct_padding(image, values, ranges)
            if info is not None:
                info["ct_outside_fov_voxels"] = n_padding
        image = to_int16_if_lossless(image)
    return image
