"""The run's timing table: stages and folds in running order, folds from their tracked runs; the
demo's printed table adds what no stage covers and the total."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from dlm_ml.cli.demo import format_stage_table
from dlm_ml.cli.stage_times import fold_rows, stage_table
from dlm_ml.training.cross_validation import FOLD_THREADS_TAG
from dlm_ml.utils.timing import PARALLEL_FOLDS_STAGE, wall_seconds


def _run(fold, start_ms, end_ms, role="fold", threads=None):
    tags = {"fold": str(fold), "dlm_ml.role": role} | ({FOLD_THREADS_TAG: str(threads)} if threads else {})
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(start_time=start_ms, end_time=end_ms))


class _Client:
    def __init__(self, runs):
        self.runs, self.queries = runs, []

    def search_runs(self, experiments, query):
        self.queries.append((experiments, query))
        return self.runs


def test_fold_rows_from_the_fold_runs_start_and_end_by_fold():
    client = _Client([_run(1, 10_000, 40_500), _run(0, 0, 20_000), _run(2, 50_000, None),
                      _run(3, 0, 1_000, role="other")])
    rows = fold_rows(SimpleNamespace(client=client, experiment_id="7"), "parent", cores=2)
    assert rows == [{"stage": "fold 0", "seconds": 20.0, "cores": 2},
                    {"stage": "fold 1", "seconds": 30.5, "cores": 2}]
    assert client.queries == [(["7"], "tags.`mlflow.parentRunId` = 'parent'")]


def test_a_fold_row_shows_the_threads_the_fold_trained_with():
    # folds trained two at a time had one thread each on 2 cores; a tabular fold records none
    client = _Client([_run(0, 0, 1_000, threads=1), _run(1, 0, 1_000, threads=8), _run(2, 0, 1_000)])
    rows = fold_rows(SimpleNamespace(client=client, experiment_id="7"), "parent", cores=2)
    assert [r["cores"] for r in rows] == [1, 2, 2]


def test_folds_go_between_the_inputs_and_the_evaluation():
    recorded = [{"stage": s, "seconds": 1.0, "cores": 2} for s in ("synthesis", "validation", "evaluation")]
    folds = [{"stage": "fold 0", "seconds": 5.0, "cores": 2}]
    table = stage_table(recorded, folds)
    assert table.stage.tolist() == ["synthesis", "validation", "fold 0", "evaluation"]
    assert stage_table(recorded[:2], folds).stage.tolist() == ["synthesis", "validation", "fold 0"]


def test_printed_table_has_every_stage_the_rest_and_the_total():
    table = pd.DataFrame({"stage": ["synthesis", "fold 0"], "seconds": [3.3, 20.0], "cores": [2, 2]})
    text = format_stage_table(table, wall_s=30.0).splitlines()
    assert text[0].split() == ["stage", "seconds", "cores"]
    assert text[1].split() == ["synthesis", "3.3", "2"]
    assert text[2].split() == ["fold", "0", "20.0", "2"]
    assert text[-2].split()[-1] == "6.7" and text[-1].split()[-1] == "30.0"


def test_folds_trained_at_once_count_once_in_the_rest():
    # Two folds of 20 s each ran side by side in 22 s: the rest is 30 - 3.3 - 22 = 4.7 s, not negative.
    table = pd.DataFrame({"stage": ["synthesis", PARALLEL_FOLDS_STAGE, "fold 0", "fold 1"],
                          "seconds": [3.3, 22.0, 20.0, 20.0], "cores": [2, 2, 2, 2]})
    text = format_stage_table(table, wall_s=30.0).splitlines()
    assert text[-2].split()[-1] == "4.7"
    # without the row of the parallel stage the folds ran one after the other: each counts
    assert wall_seconds(table[table.stage != PARALLEL_FOLDS_STAGE].to_dict("records")) == pytest.approx(43.3)
