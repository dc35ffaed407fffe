"""MLflow helpers: store setup, flattened params, tags, metrics, artifact I/O.

Everything goes through ``MlflowClient`` with explicit run ids, so a fold's child run
can never be confused with another run that happens to be active in the process.
Only pseudonymous cohort ids ever reach the store.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dlm_ml.utils.signals import interrupts_deferred

__all__ = ["HTTP_FAIL_FAST", "PARENT_TAG", "TrackingUnavailableError", "check_reachable", "download_artifact",
           "flatten", "get_experiment_id", "log_file", "log_metrics", "log_params", "log_text", "open_client",
           "server_gone", "set_tags"]

PARENT_TAG = "mlflow.parentRunId"

#: MLflow's HTTP request settings for this process, so that every call to a tracking server
#: that died or hangs fails within about 50 s (3 attempts of at most 15 s, 0 + 2-3 s of back-off)
#: instead of MLflow's default of minutes per call (7 retries, back-off factor 2, 120 s timeout):
#: a run then ends with :class:`TrackingUnavailableError` rather than appearing to hang. MLflow
#: reads them at each request; a value already set in the environment is kept, so a user who
#: needs more patience (a rate-limited server) sets them there.
HTTP_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


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


def server_gone(tracking_uri: str, timeout_s: float = 5.0) -> TrackingUnavailableError | None:
    """After an MLflow call failed: the error naming ``tracking_uri`` when it is an HTTP server
    that no longer answers, else ``None`` (the failure had another cause)."""
    try:
        check_reachable(tracking_uri, timeout_s)
    except TrackingUnavailableError as err:
        return err
    return None


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
    """A client of ``tracking_uri``: an HTTP server must answer now (fails fast, before any work)
    and its later calls fail fast too (:data:`HTTP_FAIL_FAST`); a SQLite store is created (or
    migrated) here, by one process at a time."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///"):])
        database.parent.mkdir(parents=True, exist_ok=True)
        with _store_creation_lock(database):
            client = MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)  # builds the store: schema, migrations, default experiment
        return client
    if tracking_uri.startswith(("http://", "https://")):
        for name, value in HTTP_FAIL_FAST.items():
            os.environ.setdefault(name, value)
    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


@contextmanager
def _store_creation_lock(database: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` (the file stays). MLflow creates and migrates
    a fresh SQLite store without a transaction around the whole: two processes opening the same
    new store at once (parallel sweep jobs, two commands started together) both run the schema
    migration and one fails (alembic "expected to match one row", "duplicate column name"). The
    store is built once per process, so only its first opening waits."""
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


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
