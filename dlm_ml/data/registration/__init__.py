"""Registration of every image into its patient's baseline CT space (docs/design.md §2).

Public API::

    config = registration_config_from_cfg(cfg.data)        # or RegistrationConfig(...)
    regs = register_cohort(cohort, config, cache_dir)      # RegistrationSet (cached by content)
    regs.transform_path("P0001", "presurgery", "adc")      # ITK .tfm: baseline CT → image points
    regs.summary()                                         # n_images, n_flagged, n_excluded, ...

Modules: ``config`` (settings), ``pair`` (one registration and its quality checks),
``cohort`` (chains, cache, process pool), ``qa`` (checkerboard and montage PNGs), ``accuracy``
(TRE against a cohort's truth, known rigid motions; benchmarks and tests).
"""

from dlm_ml.data.registration.cohort import (
    REGISTRATION_ALGORITHM_VERSION,
    RegistrationSet,
    read_transform,
    register_cohort,
    write_transform,
)
from dlm_ml.data.registration.config import (
    FailureThresholds,
    RegistrationConfig,
    StageConfig,
    registration_config_from_cfg,
)
from dlm_ml.data.registration.pair import PairResult, prepare, register_pair

__all__ = [
    "FailureThresholds",
    "PairResult",
    "REGISTRATION_ALGORITHM_VERSION",
    "RegistrationConfig",
    "RegistrationSet",
    "StageConfig",
    "prepare",
    "read_transform",
    "register_cohort",
    "register_pair",
    "registration_config_from_cfg",
    "write_transform",
]
