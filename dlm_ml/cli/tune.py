"""dlm-tune: hyper-parameter search by nested cross-validation (Optuna), tracked in MLflow.

Composes the layers as dlm-train does — cohort and inputs, the validation design's folds, one
parent run — and hands the search to :func:`dlm_ml.training.tuning.nested_cross_validate`, which
records one child run per outer fold (:mod:`dlm_ml.tracking.tuning_runs`). The outer predictions
are calibrated, thresholded and evaluated against the readers as dlm-train's are.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.errors import command_errors
from dlm_ml.cli.train import evaluate_out_of_fold, log_out_of_fold_tables, print_run_summary, validation_folds
from dlm_ml.cli.train_inputs import is_tabular, training_inputs
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.tracking import client as tracking
from dlm_ml.tracking import train_runs, tuning_runs
from dlm_ml.tracking.provenance import record_provenance
from dlm_ml.tracking.run import tracked_run
from dlm_ml.training.determinism import seed_everything
from dlm_ml.training.tuning import (
    SearchConfigError,
    SearchSettings,
    TuningData,
    nested_cross_validate,
    search_space,
)
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.signals import raise_on_sigterm

log = logging.getLogger("dlm_ml.tune")


def tune(cfg: DictConfig) -> dict:
    """The whole search; returns the parent run id, output folder, the per-fold choices and the evaluation."""
    started = time.time()
    raise_on_sigterm()
    if cfg.get("resume") or cfg.get("reproduce_of"):
        raise SearchConfigError("dlm-tune starts a new search every time (resume and reproduce_of are dlm-train's)")
    dimensions = search_space(cfg.search.space, cfg)  # a bad space stops us before any work
    settings = SearchSettings.from_config(cfg.search)
    tracker = hydra.utils.instantiate(cfg.logger)
    client = tracker.client
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not is_tabular(cfg):
        hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints before any work
    calibration = hydra.utils.instantiate(cfg.calibration)
    cohort, report = prepare_cohort(cfg.data)
    digests = cohort_file_digests(cohort.root, verify=bool(cfg.data.get("verify_fingerprint", False)))
    fingerprint = fingerprint_from_digests(digests)
    inputs = training_inputs(cfg, cohort)
    design, folds = validation_folds(cfg, inputs.lesions, cohort)
    folds_path = atomic_write_csv(out_dir / "folds.csv", folds)
    deterministic = seed_everything(int(cfg.seed), cfg.trainer.get("deterministic"))

    overrides = train_runs.command_line_overrides()
    model_name = train_runs.config_choice("model")
    run_name = tracker.run_name or train_runs.run_name_from_overrides(overrides, cfg.task_name)
    tags = {"dlm_ml.role": tuning_runs.TUNE_ROLE, train_runs.MODEL_NAME_TAG: model_name,
            train_runs.CONFIG_DIGEST_TAG: train_runs.config_digest(resolved), **train_runs.sweep_tags()}
    with train_runs.holding_run_folder(out_dir), tracked_run(client, tracker.experiment_id, run_name=run_name,
                                                             tags=tags) as run_id:
        try:
            code = record_provenance(client, run_id, config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
                                     resolved=resolved, overrides=overrides, cohort=cohort, fingerprint=fingerprint,
                                     digests=digests, out_dir=out_dir, torch_deterministic=deterministic)
            train_runs.log_training_data(client, run_id, cohort=cohort, validation_summary=report.summary(),
                                         inputs=inputs, folds=folds, folds_path=folds_path)
            tuning_runs.log_search(client, run_id, resolved["search"]["space"], settings.metric)
            data = TuningData(inputs.lesions, inputs.features, inputs.patches, inputs.covariates)
            nested = nested_cross_validate(cfg, data, folds, dimensions, settings,
                                           tuning_runs.MlflowTuningRecorder(tracker, run_id), out_dir)
            chosen = nested.chosen_table()
            tuning_runs.log_choices(client, run_id, chosen, nested.trials_table(), out_dir)
            # calibration maps fitted per fold, on its validation lesions
            predictions, thresholds = log_out_of_fold_tables(client, run_id, nested.result, calibration, None,
                                                             cohort, design, folds, out_dir)
            outcome = {"run_id": run_id, "output_dir": str(out_dir), "chosen": chosen}
            if cfg.get("evaluate", True):
                outcome["evaluation"] = evaluate_out_of_fold(
                    cfg, client, run_id, predictions, thresholds, cohort, out_dir, model_name=model_name,
                    header=train_runs.report_header(run_id, run_name, fingerprint, code.get("git_commit", "unknown")),
                    validation_design=design.describe(folds) + " (hyper-parameters tuned by nested CV)",
                    calibration=calibration.method)
        finally:
            elapsed = time.time() - started
            tracking.log_metrics(client, run_id, {"elapsed_s": elapsed})
    print(f"chosen per outer fold:\n{chosen.to_string(index=False)}")
    print_run_summary(tracker, run_id, elapsed)
    return {**outcome, "elapsed_s": elapsed}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="tune")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("PYTHONHASHSEED", str(cfg.seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is logged by dlm_ml.training instead
    with command_errors("dlm-tune", refused=(SearchConfigError,)):
        evaluation = tune(cfg).get("evaluation")
    return None if evaluation is None else evaluation.metrics.get("model_auc")


if __name__ == "__main__":
    main()
