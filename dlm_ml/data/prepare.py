"""The cohort a data config names: the synthetic one generated first when it is named and absent."""

from __future__ import annotations

import logging
from pathlib import Path

from dlm_ml.data.cohort import Cohort, CohortValidationError, Problem, ValidationReport, validate_cohort
from dlm_ml.data.synthetic import cohort_folder_name, config_differences, generate_cohort, make_config
from dlm_ml.utils.timing import stage

log = logging.getLogger("dlm_ml.data")

#: How to make a cohort where none is, for the message refusing a missing folder.
HOW_TO_MAKE_A_COHORT = ("dlm-synth DIR --preset P --n-patients N --seed S writes a synthetic cohort to DIR; "
                        "dlm-import builds one from DICOM studies (docs/importing.md)")


def prepare_cohort(data_cfg) -> tuple[Cohort, ValidationReport]:
    """Validate ``data_cfg.cohort_dir``, raising with every error at once.

    With ``data_cfg.synthetic.enabled`` (``preset``: a file of ``dlm_ml/conf/synthetic/``, ``seed``,
    ``n_patients``, null: the preset's), a synthetic cohort is generated only into the folder
    named for those settings (``synthetic_<preset>_n<N>_seed<S>``, the default ``cohort_dir``),
    and only when it does not exist; an existing one is used only when the settings it records
    are those asked. Any other missing folder is refused, never generated into: a mistyped path
    must not become a cohort."""
    cohort_dir = Path(data_cfg.cohort_dir)
    synth = data_cfg.get("synthetic")
    if synth is not None and synth.enabled:
        _synthetic_cohort(cohort_dir, synth)
    elif not cohort_dir.exists():
        _refuse(cohort_dir, f"data.cohort_dir does not exist. {HOW_TO_MAKE_A_COHORT}")
    with stage("validation"):
        report, cohort = validate_cohort(cohort_dir)
    report.raise_if_errors()
    for line in report.summary().splitlines():
        log.info(line)
    return cohort, report


def _refuse(cohort_dir: Path, message: str) -> None:
    """Refuse the cohort folder as input the user must fix: one problem, printed by the commands as
    their clean error list (a :class:`CohortValidationError`, not a traceback)."""
    raise CohortValidationError(cohort_dir, [Problem(str(cohort_dir), None, "", message)])


def _synthetic_cohort(cohort_dir: Path, synth) -> None:
    """Generate or check the synthetic cohort ``synth`` asks for when ``cohort_dir`` is its folder."""
    overrides = {"seed": synth.seed}
    if synth.get("n_patients") is not None:
        overrides["n_patients"] = synth.n_patients
    config = make_config(synth.preset, **overrides)
    folder = cohort_folder_name(config.preset, config.n_patients, config.seed)
    if cohort_dir.name != folder:
        if not cohort_dir.exists():
            _refuse(cohort_dir, f"data.cohort_dir does not exist. A synthetic cohort is generated only into the "
                                f"folder its settings name ({folder} under paths.data_dir, the default "
                                f"data.cohort_dir), never into another path. {HOW_TO_MAKE_A_COHORT}")
        log.info("data.synthetic is not used: %s is not the synthetic cohort folder %s", cohort_dir, folder)
        return
    if not cohort_dir.exists():
        log.info("writing synthetic cohort (preset %s, %d patients, seed %d) to %s", config.preset,
                 config.n_patients, config.seed, cohort_dir)
        try:
            with stage("synthesis"):
                generate_cohort(cohort_dir, config)
        except FileExistsError:
            if not cohort_dir.is_dir():
                raise
            # another job of the same sweep wrote it meanwhile: checked below like any existing one
    differences = config_differences(cohort_dir, config)
    if differences:
        _refuse(cohort_dir, f"not the synthetic cohort asked (preset {config.preset}, {config.n_patients} "
                            f"patients, seed {config.seed}); it differs in: " + "; ".join(differences)
                            + ". Remove the folder to generate it again, or name another data.cohort_dir")
