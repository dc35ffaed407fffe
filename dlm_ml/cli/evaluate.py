"""dlm-evaluate: compare out-of-fold pCR predictions with the radiologists' readings."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.evaluation.evaluate import evaluate_and_log, read_predictions


def _from_run(cfg: DictConfig, client):
    from dlm_ml import tracking

    run = client.get_run(cfg.run_id)
    pred = read_predictions(tracking.download_artifact(client, cfg.run_id, "predictions.csv"))
    thresholds = pd.read_csv(tracking.download_artifact(client, cfg.run_id, "thresholds.csv"),
                             dtype={"reader_id": str})
    cohort_dir = cfg.cohort_dir or run.data.params.get("data.cohort_dir")
    if not cohort_dir:
        raise ValueError(f"run {cfg.run_id} records no data.cohort_dir; pass cohort_dir=...")
    return pred, thresholds, cohort_dir, run.info.experiment_id


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from dlm_ml import tracking
    from dlm_ml.data.cohort import load_cohort

    client = tracking.open_client(cfg.logger.tracking_uri)
    if cfg.run_id:
        pred, thresholds, cohort_dir, experiment_id = _from_run(cfg, client)
    elif cfg.predictions and cfg.cohort_dir:
        pred, cohort_dir = read_predictions(cfg.predictions), cfg.cohort_dir
        thresholds = pd.read_csv(cfg.thresholds, dtype={"reader_id": str}) if cfg.thresholds else None
        experiment_id = tracking.get_experiment_id(client, cfg.logger.experiment_name,
                                                   cfg.logger.get("artifact_location"))
    else:
        raise SystemExit("dlm-evaluate needs run_id=<MLflow run> or predictions=<csv> cohort_dir=<cohort folder>")
    cohort = load_cohort(cohort_dir)
    tags = {"dlm_ml.role": "evaluate"}
    if cfg.run_id:
        tags["dlm_ml.evaluated_run"] = cfg.run_id
    run = client.create_run(experiment_id, run_name="evaluate", tags=tags)
    try:
        evaluation = evaluate_and_log(pred, cohort, thresholds, Path(cfg.paths.output_dir), client,
                                      run.info.run_id, n_boot=int(cfg.n_boot), seed=int(cfg.seed))
        client.set_terminated(run.info.run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    print(evaluation.table_text)
    print(f"evaluation logged to MLflow run {run.info.run_id}; files in {cfg.paths.output_dir}")


if __name__ == "__main__":
    main()
