"""The cohort a data config names: generated first when it is a synthetic default."""

from __future__ import annotations

import logging
from pathlib import Path

from dlm_ml.data.cohort import Cohort, ValidationReport, validate_cohort
from dlm_ml.data.synthetic import generate_cohort, make_config

log = logging.getLogger("dlm_ml.data")


def prepare_cohort(data_cfg) -> tuple[Cohort, ValidationReport]:
    """Validate ``data_cfg.cohort_dir`` (writing the synthetic cohort there first when the folder
    does not exist and ``data_cfg.synthetic.enabled``); raise listing every error at once.

    ``data_cfg.synthetic``: ``preset`` (a file of ``dlm_ml/conf/synthetic/``), ``seed``,
    ``n_patients`` (null: the preset's)."""
    cohort_dir = Path(data_cfg.cohort_dir)
    synth = data_cfg.get("synthetic")
    if not cohort_dir.exists() and synth is not None and synth.enabled:
        overrides = {"seed": int(synth.seed)}
        if synth.get("n_patients"):
            overrides["n_patients"] = int(synth.n_patients)
        config = make_config(synth.preset, **overrides)
        log.info("writing synthetic cohort (preset %s) to %s", config.preset, cohort_dir)
        generate_cohort(cohort_dir, config)
    report, cohort = validate_cohort(cohort_dir)
    report.raise_if_errors()
    for line in report.summary().splitlines():
        log.info(line)
    return cohort, report
