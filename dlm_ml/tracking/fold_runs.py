"""Per-fold child runs in MLflow: the :class:`dlm_ml.training.recorder.FoldRecorder` the train
command hands to the fold loop."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from pytorch_lightning.loggers import MLFlowLogger

from dlm_ml.tracking.client import PARENT_TAG, download_artifact, log_file, log_metrics, log_text, set_tags
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.tracker import MlflowTracker
from dlm_ml.utils.signals import interrupts_deferred

#: Ids stay strings when stored tables are read back (pseudonymous ids may have leading zeros).
_ID_DTYPES = {"patient_id": str, "lesion_id": str, "reader_id": str}


#: Fold-run tag set once everything the fold records (tables, files, metrics) is logged, just
#: before the run is marked FINISHED: only a fold run carrying it is reused by a resumed run.
FOLD_RECORDED_TAG = "dlm_ml.fold_recorded"

log = logging.getLogger("dlm_ml.tracking")


class DeferringMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger with every write held together against SIGTERM
    (:func:`dlm_ml.utils.signals.interrupts_deferred`), as this package's own writes are: a job
    stopped at an epoch end would otherwise often be interrupted inside the epoch's metric
    commit, and a tracking store left mid-transaction cannot then mark the run FAILED.

    It never ends the run: Lightning finalizes its logger when ``fit`` (and ``predict``)
    returns, which would mark the fold's run FINISHED before the fold's predictions are logged.
    The fold's run is closed by :meth:`MlflowFoldRecorder.open_fold` alone."""

    def log_metrics(self, metrics, step=None) -> None:
        with interrupts_deferred():
            super().log_metrics(metrics, step)

    def log_hyperparams(self, params) -> None:
        with interrupts_deferred():
            super().log_hyperparams(params)

    def finalize(self, status: str = "success") -> None:
        """Leaves the run's status alone (see the class); nothing else of Lightning's finalize
        applies (no checkpoints are logged as models)."""


class MlflowFoldRun:
    """One fold's child run while it trains."""

    def __init__(self, tracker: MlflowTracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id

    def lightning_logger(self) -> MLFlowLogger:
        return DeferringMLFlowLogger(experiment_name=self.tracker.experiment_name,
                                     tracking_uri=self.tracker.tracking_uri, run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        log_metrics(self.tracker.client, self.run_id, metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        set_tags(self.tracker.client, self.run_id, tags)

    def log_table(self, table: pd.DataFrame, file_name: str) -> None:
        # Full float precision: a resumed run rebuilds its results from these files.
        log_text(self.tracker.client, self.run_id, table.to_csv(index=False, float_format="%.17g"), file_name)

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        log_file(self.tracker.client, self.run_id, path, artifact_dir)


class MlflowFoldRecorder:
    """Child runs (tags ``mlflow.parentRunId``, ``dlm_ml.role = fold``, ``fold``) of ``parent_id``."""

    def __init__(self, tracker: MlflowTracker, parent_id: str):
        self.tracker, self.parent_id = tracker, parent_id
        self._children = None

    def children(self) -> dict:
        """The parent's existing child runs by fold (those an interrupted session left)."""
        if self._children is None:
            runs = self.tracker.client.search_runs([self.tracker.experiment_id],
                                                   f"tags.`{PARENT_TAG}` = '{self.parent_id}'")
            self._children = {}
            for run in runs:
                fold = int(run.data.tags["fold"])
                if fold in self._children:
                    raise RuntimeError(f"run {self.parent_id} has two child runs for fold {fold}: "
                                       f"{self._children[fold].info.run_id} and {run.info.run_id}")
                self._children[fold] = run
        return self._children

    def finished_tables(self, fold: int) -> dict[str, pd.DataFrame] | None:
        """The stored tables of ``fold`` when its run finished with everything recorded; ``None``
        when the fold has to be trained (again): no run, a run that did not finish, or a
        FINISHED run without :data:`FOLD_RECORDED_TAG` (one that a stop at the wrong moment,
        or an older version, left without its predictions)."""
        child = self.children().get(fold)
        if child is None or child.info.status != "FINISHED":
            return None
        if child.data.tags.get(FOLD_RECORDED_TAG) != "true":
            log.warning("fold %d: its run %s is FINISHED but was not completely recorded (no %s tag); the fold "
                        "is continued, not reused", fold, child.info.run_id, FOLD_RECORDED_TAG)
            return None
        client = self.tracker.client
        names = [a.path for a in client.list_artifacts(child.info.run_id) if a.path.endswith(".csv")]
        return {name: pd.read_csv(download_artifact(client, child.info.run_id, name), dtype=_ID_DTYPES)
                for name in names}

    def not_finished(self, folds: list[int]) -> dict[int, str]:
        """Of ``folds``, those without a completely recorded, FINISHED run, each with what its
        run is instead (none, RUNNING, FAILED, finished without its record): what a finalise
        step refuses to gather."""
        missing = {}
        for fold in folds:
            child = self.children().get(fold)
            if child is None:
                missing[fold] = "no run"
            elif child.info.status != "FINISHED":
                missing[fold] = f"run {child.info.run_id} is {child.info.status}"
            elif child.data.tags.get(FOLD_RECORDED_TAG) != "true":
                missing[fold] = f"run {child.info.run_id} finished without its complete record"
        return missing

    @contextmanager
    def open_fold(self, fold: int) -> Iterator[MlflowFoldRun]:
        existing = self.children().get(fold)
        tags = {PARENT_TAG: self.parent_id, "dlm_ml.role": "fold", "fold": str(fold)}
        with tracked_run(self.tracker.client, self.tracker.experiment_id, run_name=f"fold-{fold}", tags=tags,
                         run_id=existing.info.run_id if existing is not None else None) as run_id:
            if existing is not None and existing.data.tags.get(FOLD_RECORDED_TAG):
                set_tags(self.tracker.client, run_id, {FOLD_RECORDED_TAG: "false"})
            yield MlflowFoldRun(self.tracker, run_id)
            # The fold's last write: it finished and everything it records is in the store.
            set_tags(self.tracker.client, run_id, {FOLD_RECORDED_TAG: "true"})
