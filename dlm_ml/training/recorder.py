"""What the fold loop needs from whoever records it: an interface, so training stays independent
of any tracking backend (the MLflow implementation lives in :mod:`dlm_ml.tracking.fold_runs`)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

import pandas as pd
from pytorch_lightning.loggers import Logger

#: Tables a fold stores, by artifact file name. Test predictions: ``patient_id, lesion_id, fold,
#: prob_pcr, pcr`` (one row per test lesion); validation predictions: the same columns for the
#: fold's training-side validation lesions (what thresholds are chosen on).
PREDICTIONS_FILE = "predictions_fold.csv"
VALIDATION_PREDICTIONS_FILE = "validation_predictions_fold.csv"


class FoldRun(Protocol):
    """The record of one fold while it trains."""

    def lightning_logger(self) -> Logger:
        """A Lightning logger writing the fold's per-epoch metrics into this record."""

    def log_metrics(self, metrics: dict[str, float]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_table(self, table: pd.DataFrame, file_name: str) -> None:
        """Store ``table`` as CSV under ``file_name`` with full float precision (a resumed run
        rebuilds its results from it)."""

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None: ...


class FoldRecorder(Protocol):
    """Opens, reopens and reads back the per-fold records of one cross-validation run."""

    def finished_tables(self, fold: int) -> dict[str, pd.DataFrame] | None:
        """The stored tables (by file name) of ``fold`` if it finished in an earlier session,
        else ``None``."""

    def open_fold(self, fold: int) -> AbstractContextManager[FoldRun]:
        """Open the fold's record (or reopen the one an interrupted session left); it is
        closed as finished when the block ends normally and as failed when it raises."""


class MemoryFoldRun:
    """A fold record kept in memory (no Lightning logger): for notebooks, benchmarks and tests
    that want the fold loop without a tracking store."""

    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.files: list[Path] = []

    def lightning_logger(self):
        return False

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_table(self, table: pd.DataFrame, file_name: str) -> None:
        self.tables[file_name] = table

    def log_file(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.files.append(Path(path))


class MemoryFoldRecorder:
    """Opens a fresh :class:`MemoryFoldRun` per fold (kept in ``runs``); nothing is resumed."""

    def __init__(self):
        self.runs: dict[int, MemoryFoldRun] = {}

    def finished_tables(self, fold: int) -> None:
        return None

    def open_fold(self, fold: int) -> AbstractContextManager[MemoryFoldRun]:
        self.runs[fold] = MemoryFoldRun()
        return nullcontext(self.runs[fold])
