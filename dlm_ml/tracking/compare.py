"""Runs to compare, from the tracking store: finished training runs and their evaluation records."""

from __future__ import annotations

import json
import tempfile

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import download_artifact

#: The evaluation's structured metrics, an artifact of every evaluated run.
METRICS_ARTIFACT = "evaluation/metrics.json"


def find_train_runs(client: MlflowClient, *, experiment: str | None = None, run_ids=()) -> list:
    """Finished dlm-train parent runs of an experiment, or the given run ids, oldest first."""
    if run_ids:
        return [client.get_run(r) for r in run_ids]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no experiment named {experiment!r} in the tracking store")
    return client.search_runs([exp.experiment_id], "tags.`dlm_ml.role` = 'train' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"])


def evaluation_records(client: MlflowClient, run_id: str) -> list[dict]:
    """The structured metric records of a run's evaluation (``evaluation/metrics.json``)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifact(client, run_id, METRICS_ARTIFACT, tmp)
        except (MlflowException, OSError) as err:
            raise ValueError(f"run {run_id} has no {METRICS_ARTIFACT} (not evaluated, or evaluated by an older "
                             f"dlm_ml): {err}") from err
        payload = json.loads(path.read_text())
    if "records" not in payload:
        raise ValueError(f"run {run_id}: {METRICS_ARTIFACT} holds no structured 'records' (written by an older "
                         "dlm_ml)")
    return payload["records"]
