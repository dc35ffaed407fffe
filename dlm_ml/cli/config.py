"""Where the Hydra configuration lives, and the resolvers it uses.

The configuration ships inside the package (``dlm_ml/conf``), so a wheel installed with
``pip install .`` finds it as an editable checkout does.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

import dlm_ml
from dlm_ml.data.patches import patch_voxels

CONF_DIR = Path(dlm_ml.__file__).resolve().parent / "conf"


def _channels(timepoints, modalities) -> int:
    return len(timepoints) * len(modalities)


if not OmegaConf.has_resolver("dlm_channels"):
    OmegaConf.register_new_resolver("dlm_channels", _channels)
if not OmegaConf.has_resolver("dlm_patch_voxels"):
    OmegaConf.register_new_resolver("dlm_patch_voxels", patch_voxels)
