"""MLflow helpers: store setup, flattened params, tags, metrics, artifact I/O.

Everything goes through ``MlflowClient`` with explicit run ids, so a fold's child run
can never be confused with another run that happens to be active in the process.
Only pseudonymous cohort ids ever reach the store.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dlm_ml.utils.signals import interrupts_deferred

__all__ = ["PARENT_TAG", "TrackingUnavailableError", "check_reachable", "download_artifact", "flatten",
           "get_experiment_id", "log_file", "log_metrics", "log_params", "log_text", "open_client", "set_tags"]

PARENT_TAG = "mlflow.parentRunId"


class TrackingUnavailableError(RuntimeError):
    """The configured tracking server cannot be reached."""


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any training, when an HTTP tracking server does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status != 200:
                raise TrackingUnavailableError(f"MLflow server {tracking_uri} answered {response.status} on /health")
    except (urllib.error.URLError, OSError) as err:
        raise TrackingUnavailableError(
            f"MLflow tracking server {tracking_uri} is unreachable ({err}); start it or set "
            "logger.tracking_uri to a reachable server or a local sqlite:/// store") from err


def get_experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if artifact_location:
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
        artifact_location = Path(artifact_location).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        # Parallel sweep jobs race to create the experiment; the loser uses the winner's.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_client(tracking_uri: str) -> MlflowClient:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def flatten(mapping: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict → ``{"a.b.c": "value"}``; lists kept as their JSON text."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            flat[name] = text[:6000]  # MLflow's limit on a param value
    return flat


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k[:250], v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow's batch limit
        with interrupts_deferred():
            client.log_batch(run_id, params=items[start:start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
    for start in range(0, len(items), 500):
        with interrupts_deferred():
            client.log_batch(run_id, metrics=items[start:start + 500])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    with interrupts_deferred():
        client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


def log_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    with interrupts_deferred():
        client.log_text(run_id, text, artifact_file)


def log_file(client: MlflowClient, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    with interrupts_deferred():
        client.log_artifact(run_id, str(path), artifact_path)


def download_artifact(client: MlflowClient, run_id: str, artifact_path: str, dst_dir: str | Path | None = None) -> Path:
    dst_dir = dst_dir or tempfile.mkdtemp(prefix="dlm_ml_artifacts_")
    return Path(client.download_artifacts(run_id, artifact_path, str(dst_dir)))
