"""A ``dlm-tune`` run in MLflow: one parent run (role ``tune``) and one child run per outer test
fold holding that fold's study — every trial's parameters and inner score (``trials.csv`` and
the metric series ``trial_inner_score``), the chosen parameters (as the child's params) — and
the fold's refit as a dlm-train fold records it (predictions, metrics). The parent holds the
search settings, every fold's choice (``chosen_params.csv``), all trials, the outer
predictions and their evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.client import log_file, log_metrics, log_params, set_tags
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder, MlflowFoldRun
from dlm_ml.tracking.tracker import MlflowTracker
from dlm_ml.utils.atomic import atomic_write_csv

#: Role tag of a dlm-tune parent run (a dlm-train parent is ``train``).
TUNE_ROLE = "tune"
#: Per-fold choices and all trials, in the parent run and its output folder.
CHOSEN_PARAMS_FILE = "chosen_params.csv"
ALL_TRIALS_FILE = "trials.csv"
#: Parent tag: the search space as JSON (dotted key → its dimension).
SEARCH_SPACE_TAG = "dlm_ml.search_space"


class MlflowTuningFoldRun(MlflowFoldRun):
    """An outer fold's child run: a fold run that also records the study."""

    def log_params(self, params: dict[str, str]) -> None:
        log_params(self.tracker.client, self.run_id, params)

    def log_trial(self, number: int, score: float) -> None:
        log_metrics(self.tracker.client, self.run_id, {"trial_inner_score": score}, step=number)


class MlflowTuningRecorder:
    """Child runs of ``parent_id`` (tags ``mlflow.parentRunId``, ``dlm_ml.role = fold``, ``fold``,
    ``dlm_ml.tuned = true``), one per outer fold, opened and closed as dlm-train's fold runs are."""

    def __init__(self, tracker: MlflowTracker, parent_id: str):
        self._folds = MlflowFoldRecorder(tracker, parent_id)

    @contextmanager
    def open_fold(self, fold: int) -> Iterator[MlflowTuningFoldRun]:
        with self._folds.open_fold(fold) as run:
            run.set_tags({"dlm_ml.tuned": "true"})
            yield MlflowTuningFoldRun(run.tracker, run.run_id)


def log_search(client: MlflowClient, run_id: str, space: dict, metric: str) -> None:
    """The search space as one readable tag and the score the trials were ranked by (the
    ``search.*`` settings are params of the run, with the rest of the config)."""
    set_tags(client, run_id, {SEARCH_SPACE_TAG: json.dumps(space, sort_keys=True), "dlm_ml.search_metric": metric})


def log_choices(client: MlflowClient, run_id: str, chosen: pd.DataFrame, trials: pd.DataFrame,
                out_dir: Path) -> None:
    """Every outer fold's chosen parameters and inner score, and every trial, into the parent
    run (and ``out_dir``); the mean of the folds' best inner scores as ``mean_best_inner_score``."""
    for name, table in ((CHOSEN_PARAMS_FILE, chosen), (ALL_TRIALS_FILE, trials)):
        log_file(client, run_id, atomic_write_csv(out_dir / name, table))
    log_metrics(client, run_id, {"mean_best_inner_score": float(chosen.inner_score.mean()),
                                 "n_trials_per_fold": float(chosen.n_trials.max())})
