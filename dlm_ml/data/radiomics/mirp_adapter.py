"""mirp (IBSI-validated radiomics) on one region of one resampled crop.

Every call hands mirp numpy arrays that are already on the isotropic grid, with their spacing,
so mirp does no interpolation of its own (IBSI's interpolation step is ours, see
:mod:`dlm_ml.data.radiomics.config`). mirp's public API takes numpy arrays only with unit
spacing; its numpy file objects carry the true spacing, which morphology needs (mm, mm², mm³).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import version

import numpy as np
from mirp import extract_features
from mirp._data_import.numpy_file import ImageNumpyFile, MaskNumpyFile

MIRP_VERSION = version("mirp")

# Morphology features that weigh the ROI by intensity: meaningless on the constant image the
# ROI's shape is measured on, and the same for every timepoint only in name.
INTENSITY_WEIGHTED_MORPHOLOGY = ("morph_moran_i", "morph_geary_c", "morph_integ_int", "morph_com")


@contextmanager
def quiet_mirp() -> Iterator[None]:
    """Keep mirp's INFO lines, its per-region warnings (e.g. a uniform region falling in one bin)
    and numpy's divide warnings out of the caller's output.

    mirp calls ``logging.basicConfig(level=INFO, stream=stdout)`` on every extraction, which
    would install a stdout handler on the root logger of the caller's process. A NullHandler on
    a handler-less root makes that call a no-op; the root's level and handlers are restored after.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    null = logging.NullHandler()
    if not handlers:
        root.addHandler(null)
    root.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        if null in root.handlers:
            root.removeHandler(null)
        root.setLevel(level)


def _bounding_box(region: np.ndarray) -> tuple[slice, ...]:
    """The region's bounding box with one voxel of context (texture neighbours stay inside it)."""
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, region.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _run_mirp(image: np.ndarray, region: np.ndarray, spacing_mm: float, modality: str, settings: dict) -> dict:
    box = _bounding_box(region)
    image, region = np.ascontiguousarray(image[box], np.float32), np.ascontiguousarray(region[box], np.uint8)
    geometry = {"image_spacing": (float(spacing_mm),) * 3, "image_origin": (0.0, 0.0, 0.0),
                "image_orientation": np.eye(3), "image_dimensions": image.shape}
    with quiet_mirp():
        tables = extract_features(
            image=ImageNumpyFile(image_data=image, image_modality=modality, **geometry),
            mask=MaskNumpyFile(image_data=region, image_modality="generic_mask", **geometry),
            **settings)
    if not tables or tables[0] is None or len(tables[0]) != 1:
        raise RuntimeError("mirp returned no feature row")
    row = tables[0].iloc[0]
    return {name: float(row[name]) for name in tables[0].columns
            if name != "sample_name" and not name.startswith("image_")}


def intensity_features(image: np.ndarray, region: np.ndarray, spacing_mm: float, intensity: dict,
                       families: tuple[str, ...]) -> dict[str, float]:
    """mirp features of ``image`` (float32 ``[z, y, x]``, source units) over ``region`` (bool,
    same shape, non-empty, no NaN voxel inside): ``families`` with fixed-bin-size discretisation
    (``intensity``: ``mirp_modality``, ``bin_width``, ``bin_lower_bound``). Feature name → value."""
    settings = {
        "base_feature_families": list(families),
        "base_discretisation_method": "fixed_bin_size",
        "base_discretisation_bin_width": float(intensity["bin_width"]),
        # The lower bound of the first bin; the upper end is open, so no voxel leaves the region.
        "resegmentation_intensity_range": [float(intensity["bin_lower_bound"]), np.inf],
    }
    return _run_mirp(image, region, spacing_mm, intensity["mirp_modality"], settings)


def morphology_features(roi: np.ndarray, spacing_mm: float) -> dict[str, float]:
    """mirp's 3-D morphology of ``roi`` (bool ``[z, y, x]``, voxels of ``spacing_mm``): volumes in
    mm³, areas in mm², lengths in mm; intensity-weighted features left out."""
    values = _run_mirp(np.zeros(roi.shape, np.float32), roi, spacing_mm, "generic",
                       {"base_feature_families": ["morphology"]})
    return {k: v for k, v in values.items() if k not in INTENSITY_WEIGHTED_MORPHOLOGY}


def _probe() -> tuple[np.ndarray, np.ndarray]:
    """A small deterministic textured ball: enough for every family to name its features."""
    z, y, x = np.mgrid[:11, :11, :11]
    region = (z - 5) ** 2 + (y - 5) ** 2 + (x - 5) ** 2 <= 16
    image = (100.0 * ((x + 2 * y + 3 * z) % 7)).astype(np.float32)
    return image, region


@lru_cache(maxsize=32)
def intensity_feature_names(intensity_items: tuple, families: tuple[str, ...]) -> tuple[str, ...]:
    """mirp's feature names for these settings (``intensity_items`` = sorted ``intensity``
    items), in mirp's order: the same columns whatever images a cohort has."""
    image, region = _probe()
    return tuple(intensity_features(image, region, 1.0, dict(intensity_items), families))


@lru_cache(maxsize=1)
def morphology_feature_names() -> tuple[str, ...]:
    return tuple(morphology_features(_probe()[1], 1.0))
