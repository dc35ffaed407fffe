"""Lesion patches: one resampling per (timepoint, modality) through the composed registration
transform onto an isotropic grid around the lesion's baseline position, cached on disk."""

from dlm_ml.data.patches.extract import (
    DEFAULT_NORMALISATION,
    PATCH_ALGORITHM_VERSION,
    Normalisation,
    PatchConfig,
    PatchSet,
    build_patches,
    patch_cache_key,
    patch_grid,
    patch_voxels,
    resample_patch,
)

__all__ = ["DEFAULT_NORMALISATION", "PATCH_ALGORITHM_VERSION", "Normalisation", "PatchConfig", "PatchSet",
           "build_patches", "patch_cache_key", "patch_grid", "patch_voxels", "resample_patch"]
