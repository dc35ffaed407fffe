"""Synthetic cohorts of colorectal liver metastases for dlm_ml (docs/design.md §3, §8).

Public API::

    config = make_config("default", **{"n_patients": 12, "effects.adc_change": 0.2})
    config = make_config("tiny", ["effects.adc_change=0.2"])   # command-line style overrides
    generate_cohort("outputs/cohort", config)   # images + tables + truth/
    tables = simulate_tables(config)            # the same tables, no images (fast)

The ``dlm-synth`` command is :mod:`dlm_ml.cli.synth`. Presets are YAML files in
``dlm_ml/conf/synthetic/`` (``preset_names()``, ``preset_descriptions()``).

Modules: ``config`` (parameters, presets), ``geometry`` (image grids, visit
poses), ``anatomy`` (shapes, lesion placement, rendering), ``biology`` (latent
response, lesions through time, outcomes), ``readers`` (simulated radiologists
and their figures), ``tables`` (tables without images), ``writer`` (cohort on
disk).

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
    SynthConfig,
    cohort_folder_name,
    config_from_dict,
    make_config,
    preset_descriptions,
    preset_name,
    preset_names,
    settable_keys,
)
from dlm_ml.data.synthetic.tables import format_summary, simulate_tables, summarize
from dlm_ml.data.synthetic.writer import config_differences, disk_usage, generate_cohort

__all__ = [
    "SynthConfig",
    "cohort_folder_name",
    "config_differences",
    "config_from_dict",
    "disk_usage",
    "format_summary",
    "generate_cohort",
    "make_config",
    "preset_descriptions",
    "preset_name",
    "preset_names",
    "settable_keys",
    "simulate_tables",
    "summarize",
]
