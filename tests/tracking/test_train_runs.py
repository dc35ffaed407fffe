"""Run names, the config digest resume matches on, and the fold child-run lifecycle."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from dlm_ml.tracking.client import PARENT_TAG
from dlm_ml.tracking.config_keys import NON_RESULT_KEYS
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.train_runs import config_digest, run_name_from_overrides

RESOLVED = {"seed": 42, "task_name": "train", "resume": None, "reproduce_of": None,
            "data": {"n_folds": 5, "cohort_dir": "/data/c"}, "model": {"optimizer": {"lr": 0.001}},
            "paths": {"root_dir": "/a", "output_dir": "/a/outputs/logs/x"},
            "logger": {"experiment_name": "dlm_ml", "run_name": None}}


def test_run_name_from_result_changing_overrides():
    overrides = ["model=resnet10", "paths.root_dir=/tmp/x", "seed=2", "logger.experiment_name=e", "resume=true"]
    assert run_name_from_overrides(overrides, "train") == "model=resnet10,seed=2"
    assert run_name_from_overrides(["+model.optimizer.lr=0.01"], "train") == "model.optimizer.lr=0.01"
    assert run_name_from_overrides([], "demo") == "demo"
    assert run_name_from_overrides(["paths.root_dir=/tmp/x"], "train") == "train"


@pytest.mark.parametrize("key", NON_RESULT_KEYS)
def test_digest_ignores_keys_that_do_not_change_results(key):
    changed = copy.deepcopy(RESOLVED)
    changed[key] = {"moved": "elsewhere"}
    assert config_digest(changed) == config_digest(RESOLVED)


@pytest.mark.parametrize("path", [("seed",), ("data", "n_folds"), ("data", "cohort_dir"), ("model", "optimizer", "lr")])
def test_digest_follows_keys_that_change_results(path):
    changed = copy.deepcopy(RESOLVED)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "different"
    assert config_digest(changed) != config_digest(RESOLVED)


def test_fold_runs_finish_fail_and_reopen(tracker):
    client = tracker.client
    table = pd.DataFrame({"patient_id": ["007"], "lesion_id": ["01"], "fold": [0], "prob_pcr": [1 / 3], "pcr": [1]})
    with tracked_run(client, tracker.experiment_id, run_name="parent") as parent_id:
        recorder = MlflowFoldRecorder(tracker, parent_id)
        with recorder.open_fold(0) as run:
            run.log_table(table, "predictions_fold.csv")
        with pytest.raises(KeyboardInterrupt), recorder.open_fold(1) as run:
            raise KeyboardInterrupt("signal 15")
    children = {c.data.tags["fold"]: c for c in
                client.search_runs([tracker.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")}
    assert {k: c.info.status for k, c in children.items()} == {"0": "FINISHED", "1": "FAILED"}
    resumed = MlflowFoldRecorder(tracker, parent_id)
    stored = resumed.finished_tables(0)["predictions_fold.csv"]
    pd.testing.assert_frame_equal(stored, table, check_exact=True)  # ids keep leading zeros, floats every bit
    assert resumed.finished_tables(1) is None
    with resumed.open_fold(1):
        pass
    after = client.search_runs([tracker.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
    assert len(after) == 2 and all(c.info.status == "FINISHED" for c in after)  # reopened, not duplicated
