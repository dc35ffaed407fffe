"""The tracking store a command writes to, built from the ``logger`` config group
(``_target_: dlm_ml.tracking.tracker.MlflowTracker``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import get_experiment_id, open_client


class MlflowTracker:
    """An MLflow store and experiment.

    Parameters
    ----------
    tracking_uri : ``sqlite:///path/mlflow.db`` (embedded) or ``http(s)://server``.
    experiment_name : the experiment runs go into; created on first use.
    artifact_location : folder for the experiment's artifacts when it is created; ``None`` lets
        a tracking server decide.
    run_name : the parent run's name; ``None`` names it after the command-line overrides.
    registered_model_name : the model-registry name a training run's fold ensemble is registered
        under; ``None``: ``dlm_ml-<model option>``; ``""``: not registered.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str | None = None,
                 run_name: str | None = None, registered_model_name: str | None = None):
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = str(experiment_name)
        self.artifact_location = str(artifact_location) if artifact_location else None
        self.run_name = str(run_name) if run_name else None
        self.registered_model_name = registered_model_name

    def model_registry_name(self, model_name: str) -> str | None:
        """Where a run of model option ``model_name`` registers its ensemble (None: nowhere)."""
        if self.registered_model_name is None:
            return f"dlm_ml-{model_name}"
        return str(self.registered_model_name) or None

    def __getstate__(self) -> dict:
        # A process this is handed to (a fold worker) opens its own client: a store connection
        # does not cross processes.
        return {k: v for k, v in self.__dict__.items() if k != "client"}

    @cached_property
    def client(self) -> MlflowClient:
        """The client; opening it checks that an HTTP server answers (fails fast, before any work)."""
        return open_client(self.tracking_uri)

    @cached_property
    def experiment_id(self) -> str:
        return get_experiment_id(self.client, self.experiment_name, self.artifact_location)

    def ui_command(self) -> str:
        """How to look at the runs: the URL of a server, or the ``mlflow ui`` command for a local store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {self.tracking_uri} in a browser"
        extra = (f" --default-artifact-root {Path(self.artifact_location).resolve().as_uri()}"
                 if self.artifact_location else "")
        return f"mlflow ui --backend-store-uri {self.tracking_uri}{extra} --port 5000"
