"""Synthetic cohorts of colorectal liver metastases for dlm_ml (DESIGN.md §3, §8).

Public API::

    config = make_config("default", **{"n_patients": 12, "effects.adc_change": 0.2})
    generate_cohort("outputs/cohort", config)   # images + tables + truth/
    tables = simulate_tables(config)            # the same tables, no images (fast)
    main(["outputs/cohort", "--preset", "tiny"])  # the dlm-synth console script

Modules: ``config`` (parameters, presets), ``geometry`` (image grids, visit
poses), ``anatomy`` (shapes, lesion placement, rendering), ``biology`` (latent
response, lesions through time, outcomes), ``readers`` (simulated radiologists
and their figures), ``tables`` (tables without images), ``writer`` (cohort on
disk, CLI).

Second version (default): every image has its own grid (spacing, field of view,
flipped axes) and its own true pose (rigid motion between and within visits, a
breathing deformation), so images must be registered. The truth lives in
``truth/images.csv`` (pose parameters; ``geometry.load_true_poses`` and
``geometry.true_transform`` rebuild SimpleITK transforms) and
``truth/lesion_positions.csv`` (each lesion centre in each image's own space).
``geometry.misalignment: false`` and ``geometry.vary_grids: false`` give back the
aligned first version.
"""

from dlm_ml.data.synthetic.config import (
    PRESETS,
    SynthConfig,
    apply_overrides,
    config_from_dict,
    make_config,
    valid_keys,
)
from dlm_ml.data.synthetic.tables import simulate_tables, summarize
from dlm_ml.data.synthetic.writer import generate_cohort, main

__all__ = [
    "PRESETS",
    "SynthConfig",
    "apply_overrides",
    "config_from_dict",
    "generate_cohort",
    "main",
    "make_config",
    "simulate_tables",
    "summarize",
    "valid_keys",
]
