"""dlm-train killed outright (SIGKILL: no handler, no cleanup) in the middle of a fold, then
``resume=true``: the fold continues from its last finished epoch and the run's out-of-fold
predictions equal an uninterrupted run's, with no fold duplicated or missing."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from dlm_ml.data.synthetic import generate_cohort, make_config
from dlm_ml.models.callbacks import epochs_in_resume_checkpoint
from dlm_ml.training.cross_validation import RESUMED_AFTER_EPOCHS_TAG
from tests.cli.test_reproducibility import _predictions, _train, _train_in_background, _train_runs, _uri

pytestmark = pytest.mark.slow  # trains through the real command three times

EXTRA = ["trainer.max_epochs=8", "callbacks.early_stopping.patience=100", "logger.experiment_name=mid_fold"]
KILL_FOLD, KILL_AFTER_EPOCHS = 1, 3


def _kill_after_epochs(proc: subprocess.Popen, new_run_folders, fold: int, epochs: int) -> int:
    """SIGKILL ``proc`` once fold ``fold`` of its run has finished ``epochs`` epochs; returns how
    many it had finished by then (read from the fold's resume checkpoint)."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        for run_dir in new_run_folders():
            last = run_dir / f"fold_{fold}" / "resume" / "last.ckpt"
            if last.is_file() and (done := epochs_in_resume_checkpoint(last)) >= epochs:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                return done
        time.sleep(0.05)
    raise AssertionError(f"training ended (exit code {proc.poll()}) before fold {fold} finished {epochs} epochs")


def test_killed_mid_fold_then_resumed_equals_uninterrupted(tmp_path):
    root = tmp_path
    cohort = generate_cohort(root / "cohort", make_config("tiny", seed=3), progress=False)
    env = {**os.environ, "DLM_ML_CACHE": str(root / "cache_home"), "PYTHONUNBUFFERED": "1"}
    _train(root, cohort, env, *EXTRA)
    client = MlflowClient(_uri(root))
    uninterrupted = _train_runs(client, "mid_fold")[-1]

    proc, new_run_folders = _train_in_background(root, cohort, env, *EXTRA)
    finished_epochs = _kill_after_epochs(proc, new_run_folders, KILL_FOLD, KILL_AFTER_EPOCHS)
    killed = _train_runs(client, "mid_fold")[-1]
    assert killed.info.run_id != uninterrupted.info.run_id
    assert killed.info.status == "RUNNING"  # a SIGKILL leaves the run as it was; its process is gone

    _train(root, cohort, env, *EXTRA, "resume=true")
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED" and len(_train_runs(client, "mid_fold")) == 2
    children = {c.data.tags["fold"]: c for c in client.search_runs(
        [killed.info.experiment_id], f"tags.`mlflow.parentRunId` = '{killed.info.run_id}'")}
    assert sorted(children) == ["0", "1", "2"]  # none duplicated, none missing
    # the killed fold continued from the epoch its checkpoint held, not from epoch 0
    assert int(children[str(KILL_FOLD)].data.tags[RESUMED_AFTER_EPOCHS_TAG]) == finished_epochs >= KILL_AFTER_EPOCHS
    assert children["2"].data.tags[RESUMED_AFTER_EPOCHS_TAG] == "0"
    assert RESUMED_AFTER_EPOCHS_TAG not in children["0"].data.tags  # finished before the kill: reused
    a = _predictions(client, uninterrupted.info.run_id, tmp_path / "a")
    b = _predictions(client, killed.info.run_id, tmp_path / "b")
    merged = a.merge(b, on=["patient_id", "lesion_id"])
    assert len(merged) == len(a) == len(b)
    assert (merged.prob_pcr_x == merged.prob_pcr_y).all()  # bit for bit on CPU
