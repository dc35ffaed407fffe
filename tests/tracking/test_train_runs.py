"""Run names, the config digest resume matches on, and the fold child-run lifecycle."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys

import pandas as pd
import pytest

from dlm_ml.tracking.client import PARENT_TAG
from dlm_ml.tracking.config_keys import NON_RESULT_KEYS
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.train_runs import (
    CONFIG_DIGEST_TAG,
    RUN_LOCK_FILE,
    RunHeldElsewhere,
    config_digest,
    find_resumable,
    holding_run_folder,
    run_name_from_overrides,
)
from tests.conftest import REPO

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


# A second process running a run: it holds the run's output folder as dlm-train does, then works on.
HOLD_AND_WORK = """
import sys, time
from pathlib import Path
from dlm_ml.tracking.train_runs import holding_run_folder
with holding_run_folder(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_resume_refuses_a_run_another_live_process_runs(tracker, tmp_path):
    out_dir = tmp_path / "run"
    digest = "held-elsewhere"
    run = tracker.client.create_run(tracker.experiment_id, tags={
        CONFIG_DIGEST_TAG: digest, "dlm_ml.role": "train", "output_dir": str(out_dir)})
    out_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WORK, str(out_dir)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()[-3000:]
        for resume in ("true", run.info.run_id):
            with pytest.raises(RunHeldElsewhere) as refused:
                find_resumable(tracker, resume, digest)
            message = str(refused.value)
            assert f"run {run.info.run_id} is still running" in message
            assert f"process {holder.pid} on {socket.gethostname()}" in message and RUN_LOCK_FILE in message
        with pytest.raises(RunHeldElsewhere), holding_run_folder(out_dir):
            pass
    finally:
        holder.kill()  # SIGKILL: gone without any cleanup of its own
        holder.wait(timeout=60)
    # the operating system dropped the dead process's hold: the run is resumed
    assert find_resumable(tracker, "true", digest).info.run_id == run.info.run_id
    with holding_run_folder(out_dir):
        assert (out_dir / RUN_LOCK_FILE).read_text().startswith("process ")
