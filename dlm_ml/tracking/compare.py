"""Runs to compare, from the tracking store: finished training runs and dlm-evaluate runs of
predictions made elsewhere, their evaluation records and their predictions."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import download_artifact
from dlm_ml.tracking.train_runs import MODEL_NAME_TAG

#: The evaluation's structured metrics, an artifact of every evaluated run.
METRICS_ARTIFACT = "evaluation/metrics.json"
#: The out-of-fold predictions a run evaluated (dlm-train and dlm-evaluate both log them).
PREDICTIONS_ARTIFACT = "predictions.csv"
_FINISHED = "attributes.status = 'FINISHED'"


def find_train_runs(client: MlflowClient, *, experiment: str | None = None, run_ids=()) -> list:
    """Finished dlm-train parent runs of an experiment, or the given run ids, oldest first."""
    if run_ids:
        return [client.get_run(r) for r in run_ids]
    return client.search_runs([_experiment_id(client, experiment)], f"tags.`dlm_ml.role` = 'train' and {_FINISHED}",
                              order_by=["attributes.start_time ASC"])


def find_compared_runs(client: MlflowClient, *, experiment: str | None = None, run_ids=()) -> list[Run]:
    """The given run ids; or every finished dlm-train run of ``experiment`` and every finished
    dlm-evaluate run of predictions made elsewhere (a ``predictions=`` file: an evaluation of a
    training run repeats that run's row and is left out), oldest first."""
    if run_ids:
        return [client.get_run(r) for r in run_ids]
    exp_id = _experiment_id(client, experiment)
    train = client.search_runs([exp_id], f"tags.`dlm_ml.role` = 'train' and {_FINISHED}")
    evaluations = [r for r in client.search_runs([exp_id], f"tags.`dlm_ml.role` = 'evaluate' and {_FINISHED}")
                   if not r.data.tags.get("dlm_ml.evaluated_run")]
    return sorted([*train, *evaluations], key=lambda r: r.info.start_time)


def _experiment_id(client: MlflowClient, experiment: str | None) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no experiment named {experiment!r} in the tracking store")
    return exp.experiment_id


def model_name(run: Run) -> str:
    """The model a run's predictions come from: its ``dlm_ml.model`` tag, else its run name."""
    return run.data.tags.get(MODEL_NAME_TAG) or run.info.run_name


def cohort_dir(run: Run) -> str:
    """The cohort folder a run recorded (tag ``cohort_dir``, else param ``data.cohort_dir``), or ''."""
    return run.data.tags.get("cohort_dir") or run.data.params.get("data.cohort_dir") or ""


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


def download_predictions(client: MlflowClient, run_id: str, dst_dir: str | Path) -> Path:
    """The run's ``predictions.csv`` artifact, downloaded under ``dst_dir``."""
    dst = Path(dst_dir) / run_id
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return download_artifact(client, run_id, PREDICTIONS_ARTIFACT, dst)
    except (MlflowException, OSError) as err:
        raise ValueError(f"run {run_id} has no {PREDICTIONS_ARTIFACT} artifact (a dlm-evaluate run made before "
                         f"dlm-evaluate logged its predictions?): {err}") from err
