"""dlm-evaluate: compare out-of-fold pCR predictions with the radiologists' readings.

``dlm-evaluate run_id=RUN`` (the run's predictions, thresholds and cohort) or ``dlm-evaluate
predictions=CSV cohort_dir=DIR [thresholds=CSV] [model_name=NAME]``; ``evaluation.n_boot=...`` etc.
set the statistics (conf/evaluation/default.yaml). The evaluation is recorded as its own MLflow
run, tagged with the model's name, the cohort and its fingerprint, with the predictions it
evaluated, so that ``dlm-compare`` can line it up with training runs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from dlm_ml import tracking
from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.errors import command_errors
from dlm_ml.cli.evaluation_run import evaluate_into_run
from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.evaluation.evaluate import read_predictions
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.train_runs import MODEL_NAME_TAG


def _inputs(cfg: DictConfig, client):
    """(predictions file, thresholds or None, cohort folder, experiment id, source, model name) from a run
    or from files; the model's name: ``model_name``, else the evaluated run's, else ``model``."""
    if cfg.run_id:
        run = client.get_run(cfg.run_id)
        pred = tracking.download_artifact(client, cfg.run_id, "predictions.csv")
        thresholds = pd.read_csv(tracking.download_artifact(client, cfg.run_id, "thresholds.csv"),
                                 dtype={"reader_id": str})
        cohort_dir = cfg.cohort_dir or run.data.params.get("data.cohort_dir")
        if not cohort_dir:
            raise ValueError(f"run {cfg.run_id} records no data.cohort_dir; pass cohort_dir=...")
        name = cfg.model_name or run.data.tags.get(MODEL_NAME_TAG) or "model"
        return pred, thresholds, cohort_dir, run.info.experiment_id, f"run {cfg.run_id} ({run.info.run_name})", name
    if cfg.predictions and cfg.cohort_dir:
        thresholds = pd.read_csv(cfg.thresholds, dtype={"reader_id": str}) if cfg.thresholds else None
        experiment_id = tracking.get_experiment_id(client, cfg.logger.experiment_name,
                                                   cfg.logger.get("artifact_location"))
        return (Path(cfg.predictions), thresholds, cfg.cohort_dir, experiment_id, str(cfg.predictions),
                cfg.model_name or "model")
    raise SystemExit("dlm-evaluate needs run_id=<MLflow run> or predictions=<csv> cohort_dir=<cohort folder>")


def evaluate(cfg: DictConfig) -> None:
    """Evaluate the predictions ``cfg`` names against its cohort's readers, into a new MLflow run."""
    client = tracking.open_client(cfg.logger.tracking_uri)
    pred_path, thresholds, cohort_dir, experiment_id, source, model_name = _inputs(cfg, client)
    pred = read_predictions(pred_path)
    cohort = load_cohort(cohort_dir)
    fingerprint = cohort_fingerprint(cohort_dir)
    tags = {"dlm_ml.role": "evaluate", MODEL_NAME_TAG: model_name, "cohort_fingerprint": fingerprint,
            "cohort_dir": str(Path(cohort_dir).resolve()),
            **({"dlm_ml.evaluated_run": cfg.run_id} if cfg.run_id else {})}
    with tracked_run(client, experiment_id, run_name=f"evaluate {model_name}", tags=tags) as run_id:
        header = {"evaluation run": run_id, "model": model_name, "predictions": source, "cohort": str(cohort_dir),
                  "cohort fingerprint": fingerprint, "git commit": tracking.git_state().get("git_commit", "unknown"),
                  "thresholds": "per fold, matched to each reader" if thresholds is not None else "none given",
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        evaluate_into_run(client, run_id, pred, cohort, thresholds, cfg.paths.output_dir,
                          evaluation_cfg=cfg.evaluation, header=header, model_name=model_name)
        # The predictions evaluated, under the name dlm-train uses: dlm-compare's paired tests read them.
        tracking.log_text(client, run_id, Path(pred_path).read_text(), "predictions.csv")
    print(f"evaluation logged to MLflow run {run_id}; files in {cfg.paths.output_dir}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with command_errors("dlm-evaluate"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
