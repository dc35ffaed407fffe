"""dlm-train: patient-grouped K-fold training, out-of-fold predictions, evaluation, MLflow tracking.

Composes the layers: tracking store (``logger``), cohort and patches (``data``), folds, the fold
loop (:mod:`dlm_ml.training`) recorded in per-fold child runs, reader-matched thresholds chosen
on each fold's validation lesions, evaluation against the readers. ``resume=true`` (or
``resume=<run id>``) continues an interrupted run into the same parent run.
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
from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
from dlm_ml.data.covariates import covariate_table, lesion_covariates
from dlm_ml.data.folds import check_no_leakage, make_folds
from dlm_ml.data.patches import build_patches
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.data.registration import registration_config_from_cfg
from dlm_ml.evaluation.evaluate import evaluate
from dlm_ml.evaluation.thresholds import reader_matched_thresholds
from dlm_ml.tracking import client as tracking
from dlm_ml.tracking import train_runs
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.provenance import record_provenance
from dlm_ml.tracking.run import tracked_run
from dlm_ml.training.cross_validation import CrossValidationResult, cross_validate
from dlm_ml.training.determinism import seed_everything
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.signals import raise_on_sigterm

log = logging.getLogger("dlm_ml.train")


def fold_thresholds(result: CrossValidationResult, readings: pd.DataFrame) -> pd.DataFrame:
    """Per fold, the model threshold matched to each reader's specificity on that fold's
    validation lesions (training side): test lesions never choose a threshold."""
    return pd.concat([reader_matched_thresholds(f.validation[["patient_id", "lesion_id", "pcr"]],
                                                f.validation.prob_pcr.to_numpy(), readings, f.fold)
                      for f in result.folds], ignore_index=True)


def _folds(cfg: DictConfig, lesions: pd.DataFrame) -> pd.DataFrame:
    if not cfg.data.get("folds_file"):
        return make_folds(lesions, int(cfg.data.n_folds), int(cfg.seed))
    folds = pd.read_csv(cfg.data.folds_file, dtype={"patient_id": str})
    check_no_leakage(folds)
    return folds


def train(cfg: DictConfig) -> dict:
    """The whole training job; returns the parent run id, output folder and evaluation."""
    started = time.time()
    raise_on_sigterm()
    tracker = hydra.utils.instantiate(cfg.logger)
    client = tracker.client  # an unreachable server stops us here, before any work
    resolved = OmegaConf.to_container(cfg, resolve=True)
    digest = train_runs.config_digest(resolved)
    resumed = train_runs.find_resumable(tracker, cfg.resume, digest) if cfg.get("resume") else None
    out_dir = Path(resumed.data.tags["output_dir"]) if resumed else Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    patch_config = hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints
    covariate_config = hydra.utils.instantiate(cfg.data.covariates)
    cohort, report = prepare_cohort(cfg.data)
    covariate_table(cohort, cohort.labelled_lesions(), covariate_config)  # a wrong column stops us before imaging
    digests = cohort_file_digests(cohort.root, verify=bool(cfg.data.get("verify_fingerprint", False)))
    fingerprint = fingerprint_from_digests(digests)
    if resumed and resumed.data.tags.get("cohort_fingerprint") != fingerprint:
        raise ValueError(f"cohort {cohort.root} changed since run {resumed.info.run_id} started; cannot resume")
    patches = build_patches(cohort, patch_config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=log.info, registration=registration_config_from_cfg(cfg.data))
    covariates = lesion_covariates(cohort, patches.lesions, covariate_config)
    folds = _folds(cfg, patches.lesions)
    folds_path = atomic_write_csv(out_dir / "folds.csv", folds)
    # Determinism as training will run it, so the provenance tag records the true state.
    deterministic = seed_everything(int(cfg.seed), cfg.trainer.get("deterministic"))

    overrides = train_runs.command_line_overrides()
    run_name = resumed.info.run_name if resumed else (
        tracker.run_name or train_runs.run_name_from_overrides(overrides, cfg.task_name))
    tags = {"dlm_ml.resumed": "true"} if resumed else {
        "dlm_ml.role": "train", train_runs.CONFIG_DIGEST_TAG: digest, **train_runs.sweep_tags(),
        **({"dlm_ml.reproduces": str(cfg.reproduce_of)} if cfg.get("reproduce_of") else {})}
    with tracked_run(client, tracker.experiment_id, run_name=run_name, tags=tags,
                     run_id=resumed.info.run_id if resumed else None) as run_id:
        try:
            if resumed:
                log.info("resuming MLflow run %s in %s", run_id, out_dir)
            else:
                code = record_provenance(client, run_id, config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
                                         resolved=resolved, overrides=overrides, cohort=cohort,
                                         fingerprint=fingerprint, digests=digests, out_dir=out_dir,
                                         torch_deterministic=deterministic)
                train_runs.log_training_data(client, run_id, cohort=cohort, validation_summary=report.summary(),
                                             patches=patches, folds=folds, folds_path=folds_path)
            result = cross_validate(cfg, patches, folds, MlflowFoldRecorder(tracker, run_id), out_dir, covariates)
            thresholds = fold_thresholds(result, cohort.readings)
            for name, table in (("predictions.csv", result.predictions), ("thresholds.csv", thresholds)):
                tracking.log_file(client, run_id, atomic_write_csv(out_dir / name, table))
            outcome = {"run_id": run_id, "output_dir": str(out_dir)}
            if cfg.get("evaluate", True):
                commit = (resumed.data.tags if resumed else code).get("git_commit", "unknown")
                evaluation = evaluate(result.predictions, cohort, thresholds, out_dir / "evaluation",
                                      settings=hydra.utils.instantiate(cfg.evaluation),
                                      header=train_runs.report_header(run_id, run_name, fingerprint, commit))
                train_runs.log_evaluation(client, run_id, evaluation)
                outcome["evaluation"] = evaluation
                print(evaluation.table_text)
        finally:
            # The whole run's time, the earlier sessions' included, also when this one is interrupted.
            elapsed = train_runs.elapsed_before(resumed) + time.time() - started
            tracking.log_metrics(client, run_id, {"elapsed_s": elapsed})
    print(f"MLflow run {run_id} (experiment {tracker.experiment_name!r}); elapsed {elapsed:.1f} s")
    print(f"Open the tracking UI with:\n  {tracker.ui_command()}")
    return {**outcome, "elapsed_s": elapsed}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("PYTHONHASHSEED", str(cfg.seed))
    evaluation = train(cfg).get("evaluation")
    return None if evaluation is None else evaluation.metrics.get("model_auc")


if __name__ == "__main__":
    main()
