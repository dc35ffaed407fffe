"""Per-lesion regions on an isotropic crop grid in baseline CT space.

A lesion's ROI is its mask (``mask_path``/``mask_label`` of ``lesions.csv``: a label image in
baseline CT space), else a sphere of its baseline ``diameter_mm`` centred at (``x_mm``,
``y_mm``, ``z_mm``). The peritumoral ring is the voxels within ``ring_mm`` outside the ROI. Both
are defined once, on a cubic grid of ``spacing_mm`` with LPS axes (the patches' grid,
:func:`dlm_ml.data.patches.patch_grid`), and applied to every (timepoint, modality): at
presurgery the ROI is where the lesion *was* at baseline, after registration.

Arrays are ``[z, y, x]`` (SimpleITK's numpy order), bool, ``size_voxels`` per edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from dlm_ml.data.imaging.image_header import ImageHeader, read_image_header
from dlm_ml.data.imaging.masks import MaskError, load_mask
from dlm_ml.data.patches import patch_grid
from dlm_ml.data.radiomics.config import RadiomicsConfig


@dataclass
class LesionRegions:
    """One lesion's regions on its crop grid.

    Attributes
    ----------
    centre_mm : (x, y, z)
        Physical LPS centre (mm) of the cubic crop grid (centre of the ROI's bounding box).
    size_voxels : int
        Voxels per edge of the crop grid; spacing is the config's ``spacing_mm``.
    regions : dict
        ``"roi"`` and (``ring_mm`` > 0) ``"ring"`` → bool array ``[z, y, x]``.
    source : str
        ``"mask"`` or ``"sphere"``.
    """

    patient_id: str
    lesion_id: str
    centre_mm: tuple[float, float, float]
    size_voxels: int
    regions: dict[str, np.ndarray]
    source: str


def crop_size_voxels(extent_mm: float, config: RadiomicsConfig) -> int:
    """Voxels per edge of a cube holding an ROI of ``extent_mm`` plus ring and margin on each side."""
    edge = float(extent_mm) + 2.0 * (config.ring_mm + config.margin_mm)
    return int(math.ceil(edge / config.spacing_mm)) + 1


def aligned_centre(lo_mm: np.ndarray, hi_mm: np.ndarray, size_voxels: int, spacing_mm: float) -> tuple:
    """Centre of a crop of ``size_voxels`` around the box [lo, hi]: the box centre, moved by half
    a voxel on an axis whose extent has the other parity, so that a mask on a grid of the same
    spacing and axes has its voxel centres on the crop's (no half-voxel blur of the ROI edge)."""
    centre = (np.asarray(lo_mm, float) + np.asarray(hi_mm, float)) / 2.0
    n = np.round((np.asarray(hi_mm) - np.asarray(lo_mm)) / spacing_mm).astype(int)
    centre = centre + np.where((size_voxels - n) % 2 == 1, spacing_mm / 2.0, 0.0)
    return tuple(float(v) for v in centre)


def voxel_centres(centre_mm, size_voxels: int, spacing_mm: float) -> np.ndarray:
    """Physical points (mm) of the crop grid's voxel centres, ``[z, y, x, 3]`` (x, y, z last)."""
    half = (size_voxels - 1) / 2.0 * spacing_mm
    axis = np.arange(size_voxels) * spacing_mm
    z, y, x = np.meshgrid(axis + centre_mm[2] - half, axis + centre_mm[1] - half, axis + centre_mm[0] - half,
                          indexing="ij")
    return np.stack([x, y, z], axis=-1)


def sphere_roi(centre_mm, diameter_mm: float, grid_centre_mm, size_voxels: int, spacing_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``diameter_mm / 2`` of ``centre_mm``."""
    points = voxel_centres(grid_centre_mm, size_voxels, spacing_mm)
    dist2 = ((points - np.asarray(centre_mm, float)) ** 2).sum(-1)
    return dist2 <= (float(diameter_mm) / 2.0) ** 2


def mask_roi(mask: sitk.Image, grid_centre_mm, size_voxels: int, spacing_mm: float, threshold: float) -> np.ndarray:
    """A 0/1 mask resampled linearly onto the crop grid, kept where ≥ ``threshold`` (IBSI
    partial-volume rule). The mask is in baseline CT space: identity transform."""
    grid = patch_grid(tuple(grid_centre_mm), size_voxels, spacing_mm)
    fraction = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    return sitk.GetArrayFromImage(fraction) >= threshold


def peritumoral_ring(roi: np.ndarray, spacing_mm: float, ring_mm: float) -> np.ndarray:
    """Voxels outside ``roi`` whose centre is within ``ring_mm`` of the nearest ROI voxel centre."""
    distance = ndimage.distance_transform_edt(~roi, sampling=spacing_mm)
    return (distance > 0) & (distance <= ring_mm)


def mask_bounds_mm(mask: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Physical (LPS mm) lower and upper corners of the box holding every mask voxel (as boxes)."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    lo, hi = zyx.min(0)[::-1] - 0.5, zyx.max(0)[::-1] + 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    d = np.asarray(mask.GetDirection()).reshape(3, 3)
    phys = np.asarray(mask.GetOrigin()) + (corners * np.asarray(mask.GetSpacing())) @ d.T
    return phys.min(0), phys.max(0)


def fov_fraction(header: ImageHeader | sitk.Image, points_mm: np.ndarray) -> float:
    """Fraction of ``points_mm`` (n, 3) inside an image's field of view (voxel boxes)."""
    if len(points_mm) == 0:
        return 0.0
    d = np.asarray(header.GetDirection()).reshape(3, 3)
    idx = ((points_mm - np.asarray(header.GetOrigin())) @ d) / np.asarray(header.GetSpacing())
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(header.GetSize()) - 0.5), axis=1)
    return float(inside.mean())


def _mask_label(value):
    """``mask_label`` as ``load_mask`` takes it: None (every non-zero voxel), an int or a name."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def lesion_regions(lesion, cohort_root: Path, config: RadiomicsConfig,
                   baseline_ct: ImageHeader | None) -> LesionRegions:
    """Regions of one lesion (a row with ``patient_id, lesion_id, x_mm, y_mm, z_mm, diameter_mm``
    and optional ``mask_path``, ``mask_label``). Raises ``ValueError`` naming patient and lesion
    when the ROI is empty (label absent, no voxel on the grid, sphere outside the baseline CT)."""
    where = f"patient {lesion['patient_id']}, lesion {lesion['lesion_id']}"
    mask_path = lesion.get("mask_path")
    has_mask = isinstance(mask_path, str) and bool(mask_path)
    if has_mask:
        try:
            mask = load_mask(Path(cohort_root) / mask_path, _mask_label(lesion.get("mask_label")))
        except MaskError as err:
            raise ValueError(f"{where}: empty ROI: {err}") from err
        lo, hi = mask_bounds_mm(mask)
        size = crop_size_voxels(float((hi - lo).max()) + config.spacing_mm, config)
        centre = aligned_centre(lo, hi, size, config.spacing_mm)
        roi = mask_roi(mask, centre, size, config.spacing_mm, config.mask_threshold)
    else:
        centre = (float(lesion["x_mm"]), float(lesion["y_mm"]), float(lesion["z_mm"]))
        diameter = float(lesion["diameter_mm"])
        if not diameter > 0:
            raise ValueError(f"{where}: empty ROI: diameter_mm is {diameter} and there is no mask")
        size = crop_size_voxels(diameter, config)
        roi = sphere_roi(centre, diameter, centre, size, config.spacing_mm)
    if not roi.any():
        raise ValueError(f"{where}: empty ROI: the {'mask' if has_mask else 'sphere'} has no voxel on the "
                         f"{config.spacing_mm:g} mm grid")
    if baseline_ct is not None:
        points = voxel_centres(centre, size, config.spacing_mm)[roi]
        if fov_fraction(baseline_ct, points) == 0.0:
            raise ValueError(f"{where}: empty ROI: the {'mask' if has_mask else 'sphere'} lies outside the "
                             f"baseline CT's field of view")
    regions = {"roi": roi}
    if config.ring_mm > 0:
        regions["ring"] = peritumoral_ring(roi, config.spacing_mm, config.ring_mm)
    return LesionRegions(str(lesion["patient_id"]), str(lesion["lesion_id"]), centre, size, regions,
                         "mask" if has_mask else "sphere")


def patient_regions(args) -> tuple[list[int], list[LesionRegions | None], list[str]]:
    """Worker: regions of one patient's lesions. ``args`` = (row indices, lesion records,
    cohort root, config dict, baseline CT path or None). Returns the row indices, the regions
    (None where a problem was found) and the problems (one line each)."""
    rows, records, cohort_root, config_dict, baseline_ct_path = args
    config = RadiomicsConfig(**config_dict)
    header = read_image_header(baseline_ct_path) if baseline_ct_path else None
    out, problems = [], []
    for record in records:
        try:
            out.append(lesion_regions(pd.Series(record), Path(cohort_root), config, header))
        except ValueError as err:
            out.append(None)
            problems.append(str(err))
    return rows, out, problems
