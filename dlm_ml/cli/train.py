"""dlm-train: patient-grouped K-fold training, out-of-fold predictions, evaluation, MLflow tracking.

Composes the layers: tracking store (``logger``), cohort and patches (``data``), folds, the fold
loop (:mod:`dlm_ml.training`) recorded in per-fold child runs, reader-matched thresholds chosen
on each fold's validation lesions, evaluation against the readers. ``resume=true`` (or
``resume=<run id>``) continues an interrupted run into the same parent run. ``data.fold=k`` trains
fold k alone as one job of a shared parent run (:mod:`dlm_ml.cli.train_fold_job`); ``finalise=true``
gathers those fold jobs into it, as a resume whose every fold has finished.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.errors import command_errors
from dlm_ml.cli.evaluation_run import evaluate_into_run
from dlm_ml.cli.stage_times import log_stage_table
from dlm_ml.cli.train_fold_job import fold_job_mode, train_fold_job
from dlm_ml.cli.train_inputs import is_tabular, training_inputs
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
from dlm_ml.data.folds import FOLD_LABEL_COLUMN, held_out_folds
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.data.validation_design import FoldsFile
from dlm_ml.evaluation.thresholds import reader_matched_thresholds
from dlm_ml.models.ensemble import write_fold_ensemble
from dlm_ml.tracking import client as tracking
from dlm_ml.tracking import train_runs
from dlm_ml.tracking.ensemble_model import log_fold_ensemble
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.provenance import record_provenance
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.train_runs import MODEL_NAME_TAG
from dlm_ml.training.cross_validation import PREDICTOR_DIR, CrossValidationResult, cross_validate
from dlm_ml.training.determinism import seed_everything
from dlm_ml.training.posthoc import calibrate_folds, fold_calibrations
from dlm_ml.training.tabular import cross_validate_tabular
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.signals import raise_on_sigterm
from dlm_ml.utils.timing import reset_stages

log = logging.getLogger("dlm_ml.train")


def fold_thresholds(result: CrossValidationResult, readings: pd.DataFrame) -> pd.DataFrame:
    """Per fold, the model threshold matched to each reader's specificity on that fold's
    validation lesions (training side): test lesions never choose a threshold."""
    return pd.concat([reader_matched_thresholds(f.validation[["patient_id", "lesion_id", "pcr"]],
                                                f.validation.prob_pcr.to_numpy(), readings, f.fold)
                      for f in result.folds], ignore_index=True)


def validation_folds(cfg: DictConfig, lesions: pd.DataFrame, cohort):
    """The validation design (``data.validation``, or the split of ``data.folds_file``) and its folds."""
    design = FoldsFile(cfg.data.folds_file) if cfg.data.get("folds_file") else hydra.utils.instantiate(
        cfg.data.validation)
    return design, design.folds(lesions, cohort.patients, int(cfg.seed))


def log_out_of_fold_tables(client, run_id: str, result: CrossValidationResult, calibration, fitted: dict | None,
                           cohort, design, folds: pd.DataFrame, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's out-of-fold record: each fold's predictions calibrated (maps ``fitted`` on its
    validation lesions, or fitted here), reader-matched thresholds chosen on the training side,
    written and logged as ``predictions.csv``, ``thresholds.csv`` (and ``calibration.csv``).
    Returns the predictions (with each test fold's name in the design) and the thresholds."""
    result, calibrations = calibrate_folds(result, calibration, fitted)
    thresholds = fold_thresholds(result, cohort.readings)
    # the design's name of each test fold (a site for leave-one-site-out), shown per fold in the report
    predictions = result.predictions.assign(
        **{FOLD_LABEL_COLUMN: result.predictions.fold.map(design.fold_labels(folds))})
    tables = [("predictions.csv", predictions), ("thresholds.csv", thresholds)]
    if len(calibrations):
        tables.append(("calibration.csv", calibrations))
    for name, table in tables:
        tracking.log_file(client, run_id, atomic_write_csv(out_dir / name, table))
    return predictions, thresholds


def evaluate_out_of_fold(cfg: DictConfig, client, run_id: str, predictions: pd.DataFrame, thresholds: pd.DataFrame,
                         cohort, out_dir: Path, *, model_name: str, header: dict, validation_design: str,
                         calibration: str):
    """Evaluate the run's out-of-fold predictions against the readers into ``out_dir/evaluation``
    and the run (settings: ``cfg.evaluation``); the report header names the run, its validation
    design and calibration."""
    header = {**header, "validation_design": validation_design, "calibration": calibration}
    return evaluate_into_run(client, run_id, predictions, cohort, thresholds, out_dir / "evaluation",
                             evaluation_cfg=cfg.evaluation, header=header, model_name=model_name)


def print_run_summary(tracker, run_id: str, elapsed: float) -> None:
    """The run id, its experiment, the elapsed time and the command that opens the tracking UI."""
    print(f"MLflow run {run_id} (experiment {tracker.experiment_name!r}); elapsed {elapsed:.1f} s")
    print(f"Open the tracking UI with:\n  {tracker.ui_command()}")


def log_ensemble(cfg: DictConfig, client, run_id: str, tracker, inputs, result: CrossValidationResult,
                 calibrations: dict, out_dir: Path, model_name: str) -> None:
    """Assemble the folds' networks, encoders and calibration maps into the run's fold ensemble
    (``out_dir/fold_ensemble``) and log it as the run's MLflow model (registered when the store can)."""
    patches = inputs.patches
    folder = write_fold_ensemble(
        out_dir / "fold_ensemble", {f.fold: out_dir / f"fold_{f.fold}" / PREDICTOR_DIR for f in result.folds},
        net_cfg=OmegaConf.to_container(cfg.model.net, resolve=True), channel_names=patches.channel_names,
        patch_voxels=patches.image.shape[-1], spacing_mm=patches.spacing_mm,
        covariates=None if inputs.covariates is None else inputs.covariates.config,
        calibrations=calibrations, model_name=model_name)
    registered = log_fold_ensemble(client, run_id, folder, tracker.model_registry_name(model_name))
    log.info("fold ensemble logged as the run's MLflow model (runs:/%s/model); registry: %s", run_id, registered)


def train(cfg: DictConfig) -> dict:
    """The whole training job; returns the parent run id, output folder and evaluation."""
    started = time.time()
    reset_stages()  # a job of a sweep run earlier in this process leaves its stage times behind
    raise_on_sigterm()
    tracker = hydra.utils.instantiate(cfg.logger)
    client = tracker.client  # an unreachable server stops us here, before any work
    resolved = OmegaConf.to_container(cfg, resolve=True)
    digest = train_runs.config_digest(resolved)
    mode = fold_job_mode(cfg)
    shared = train_runs.fold_jobs_folder(cfg.paths.fold_jobs_dir, digest) if mode else None
    if mode == "finalise":
        resumed = train_runs.parent_to_finalise(tracker, shared, digest)
    else:
        resumed = train_runs.find_resumable(tracker, cfg.resume, digest) if cfg.get("resume") else None
    out_dir = shared if mode == "fold" else Path(resumed.data.tags["output_dir"]) if resumed else Path(
        cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not is_tabular(cfg):
        hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints before any work
    calibration = hydra.utils.instantiate(cfg.calibration)
    cohort, report = prepare_cohort(cfg.data)
    digests = cohort_file_digests(cohort.root, verify=bool(cfg.data.get("verify_fingerprint", False)))
    fingerprint = fingerprint_from_digests(digests)
    if resumed and resumed.data.tags.get("cohort_fingerprint") != fingerprint:
        raise ValueError(f"cohort {cohort.root} changed since run {resumed.info.run_id} started; cannot resume")
    inputs = training_inputs(cfg, cohort)
    design, folds = validation_folds(cfg, inputs.lesions, cohort)
    if mode == "finalise":
        train_runs.check_folds_agree(out_dir / "folds.csv", folds)
    # Determinism as training will run it, so the provenance tag records the true state.
    deterministic = seed_everything(int(cfg.seed), cfg.trainer.get("deterministic"))

    overrides = train_runs.without_fold_job_overrides(train_runs.command_line_overrides())
    model_name = train_runs.config_choice("model")
    run_name = resumed.info.run_name if resumed else (
        tracker.run_name or train_runs.run_name_from_overrides(overrides, cfg.task_name))
    tags = {"dlm_ml.finalised" if mode else "dlm_ml.resumed": "true"} if resumed else {
        "dlm_ml.role": "train", MODEL_NAME_TAG: model_name, train_runs.CONFIG_DIGEST_TAG: digest,
        **train_runs.sweep_tags(),
        **({"dlm_ml.reproduces": str(cfg.reproduce_of)} if cfg.get("reproduce_of") else {})}

    def start_run(run_id: str, folds_path: Path) -> dict:
        # A fold job's parent records the configuration of all its folds (data.fold: null).
        run_cfg = OmegaConf.merge(cfg, {"data": {"fold": None}}) if mode else cfg
        code = record_provenance(client, run_id, config_yaml=OmegaConf.to_yaml(run_cfg, resolve=True),
                                 resolved=OmegaConf.to_container(run_cfg, resolve=True), overrides=overrides,
                                 cohort=cohort, fingerprint=fingerprint,
                                 digests=digests, out_dir=out_dir, torch_deterministic=deterministic)
        train_runs.log_training_data(client, run_id, cohort=cohort, validation_summary=report.summary(),
                                     inputs=inputs, folds=folds, folds_path=folds_path)
        return code

    if mode == "fold":
        return train_fold_job(cfg, tracker, out_dir, inputs, folds, run_name=run_name, start_parent=start_run,
                              tags={k: v for k, v in tags.items() if k != "dlm_ml.sweep_job"})
    if mode == "finalise" and (missing := MlflowFoldRecorder(tracker, resumed.info.run_id).not_finished(
            held_out_folds(folds))):
        raise ValueError("finalise: not every fold has finished; " + "; ".join(
            f"fold {fold}: {what}" for fold, what in missing.items()) + f" (in {out_dir}). Run those fold jobs "
            "(data.fold=k) again, then finalise")
    folds_path = atomic_write_csv(out_dir / "folds.csv", folds)
    # Held while this process runs the run: resume refuses a run another live process holds.
    with train_runs.holding_run_folder(out_dir), tracked_run(
            client, tracker.experiment_id, run_name=run_name, tags=tags,
            run_id=resumed.info.run_id if resumed else None) as run_id:
        try:
            if resumed:
                log.info("%s MLflow run %s in %s", "finalising" if mode else "resuming", run_id, out_dir)
            else:
                code = start_run(run_id, folds_path)
            recorder = MlflowFoldRecorder(tracker, run_id)
            if is_tabular(cfg):
                result = cross_validate_tabular(cfg, inputs.lesions, inputs.features, folds, recorder, out_dir)
            else:
                result = cross_validate(cfg, inputs.patches, folds, recorder, out_dir, inputs.covariates,
                                        resuming=resumed is not None, fold_workers=cfg.fold_workers)
            fitted = fold_calibrations(result, calibration)  # per fold, on its validation lesions
            if not is_tabular(cfg):
                log_ensemble(cfg, client, run_id, tracker, inputs, result, fitted, out_dir, model_name)
            predictions, thresholds = log_out_of_fold_tables(client, run_id, result, calibration, fitted, cohort,
                                                             design, folds, out_dir)
            outcome = {"run_id": run_id, "output_dir": str(out_dir)}
            if cfg.get("evaluate", True):
                commit = (resumed.data.tags if resumed else code).get("git_commit", "unknown")
                outcome["evaluation"] = evaluate_out_of_fold(
                    cfg, client, run_id, predictions, thresholds, cohort, out_dir, model_name=model_name,
                    header=train_runs.report_header(run_id, run_name, fingerprint, commit),
                    validation_design=design.describe(folds), calibration=calibration.method)
        finally:
            # The whole run's time, the earlier sessions' included, also when this one is interrupted.
            elapsed = train_runs.elapsed_before(resumed) + time.time() - started
            tracking.log_metrics(client, run_id, {"elapsed_s": elapsed})
            log_stage_table(tracker, run_id, out_dir)
    print_run_summary(tracker, run_id, elapsed)
    return {**outcome, "elapsed_s": elapsed}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("PYTHONHASHSEED", str(cfg.seed))
    with command_errors("dlm-train"):
        evaluation = train(cfg).get("evaluation")
    return None if evaluation is None else evaluation.metrics.get("model_auc")


if __name__ == "__main__":
    main()
