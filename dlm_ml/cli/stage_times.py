"""A training run's timing table: the stages this process timed (:mod:`dlm_ml.utils.timing`)
and one row per fold, read from the fold child runs' start and end in the tracking store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlm_ml.tracking import client as tracking
from dlm_ml.training.cross_validation import FOLD_THREADS_TAG
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.parallel import available_cores
from dlm_ml.utils.timing import STAGE_COLUMNS, TIMINGS_LINE_PREFIX, reset_stages, stage_rows

#: The run's timing table, in its output folder and among its artifacts.
TIMINGS_FILE = "timings.csv"


def fold_rows(tracker, run_id: str, cores: int) -> list[dict]:
    """One row per fold child run of ``run_id`` (tags ``mlflow.parentRunId``, ``dlm_ml.role =
    fold``), by fold: ``stage`` "fold k", ``seconds`` from the run's start to its end (fit,
    prediction and its records; a fold an earlier session of a resumed run trained keeps its
    time), ``cores``: the torch threads the fold trained with (its ``torch_threads`` tag; a fold
    trained in a pool of several had fewer than the process), at most ``cores``, which a fold
    without that tag (a tabular model) shows. Fold runs without an end (still open, killed) are
    left out."""
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{tracking.PARENT_TAG}` = '{run_id}'")
    folds = sorted(((int(r.data.tags["fold"]), r.info, r.data.tags) for r in runs
                    if r.data.tags.get("dlm_ml.role") == "fold" and r.info.end_time), key=lambda f: f[0])
    return [{"stage": f"fold {fold}", "seconds": (info.end_time - info.start_time) / 1000.0,
             "cores": min(cores, int(tags.get(FOLD_THREADS_TAG, cores)))}
            for fold, info, tags in folds]


def stage_table(recorded: list[dict], folds: list[dict]) -> pd.DataFrame:
    """``stage, seconds, cores``: the recorded stages in the order they ended, the folds (which
    train between preparing the inputs and the evaluation) before the first ``evaluation`` row."""
    names = [r["stage"] for r in recorded]
    at = names.index("evaluation") if "evaluation" in names else len(recorded)
    return pd.DataFrame(recorded[:at] + folds + recorded[at:], columns=list(STAGE_COLUMNS))


def log_stage_table(tracker, run_id: str, out_dir: str | Path) -> Path:
    """Write the run's timing table to ``out_dir/timings.csv``, log it as an artifact with one
    metric ``stage_s/<stage>`` per stage (seconds; a stage met twice is summed), print where it
    is, and clear this process's record for the next job."""
    table = stage_table(stage_rows(), fold_rows(tracker, run_id, available_cores()))
    reset_stages()
    path = atomic_write_csv(Path(out_dir) / TIMINGS_FILE, table)
    tracking.log_file(tracker.client, run_id, path)
    seconds = table.groupby("stage", sort=False).seconds.sum()
    tracking.log_metrics(tracker.client, run_id,
                         {f"stage_s/{name.replace(' ', '_')}": float(s) for name, s in seconds.items()})
    print(f"{TIMINGS_LINE_PREFIX}{path}")
    return path
