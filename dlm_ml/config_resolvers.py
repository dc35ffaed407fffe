"""OmegaConf resolvers used by conf/: derived sizes stay consistent with the data config."""

from __future__ import annotations

from omegaconf import OmegaConf

from dlm_ml.data.patches import patch_voxels


def _channels(timepoints, modalities) -> int:
    return len(timepoints) * len(modalities)


if not OmegaConf.has_resolver("dlm_channels"):
    OmegaConf.register_new_resolver("dlm_channels", _channels)
if not OmegaConf.has_resolver("dlm_patch_voxels"):
    OmegaConf.register_new_resolver("dlm_patch_voxels", patch_voxels)
