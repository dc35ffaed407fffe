"""A fold's run is FINISHED only once its predictions are recorded: Lightning ending its logger
after ``fit`` does not close it, a process killed between training and the predictions leaves a
fold that a resumed run continues (not one it fails on), and a FINISHED fold run without the
record that it was completely logged is not reused."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

import pandas as pd
import pytorch_lightning as pl
import torch

from dlm_ml.tracking.client import PARENT_TAG
from dlm_ml.tracking.fold_runs import FOLD_RECORDED_TAG, MlflowFoldRecorder
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.tracker import MlflowTracker
from tests.conftest import REPO

TABLE = pd.DataFrame({"patient_id": ["007"], "lesion_id": ["01"], "fold": [0], "prob_pcr": [0.25], "pcr": [1]})

# A fold trained in a process of its own: its run is opened as dlm-train opens it, Lightning fits
# (and so finalizes its MLflow logger), then the process waits where the fold's predictions
# would be computed and logged — the window a stop can land in.
TRAIN_THEN_WAIT = """
import sys, time
import pytorch_lightning as pl
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.tracker import MlflowTracker
from tests.tracking.test_fold_run_window import fit_one_epoch

tracker = MlflowTracker(sys.argv[1], sys.argv[2], artifact_location=sys.argv[3])
with tracked_run(tracker.client, tracker.experiment_id, run_name="parent") as parent_id:
    with MlflowFoldRecorder(tracker, parent_id).open_fold(0) as run:
        fit_one_epoch(run.lightning_logger())
        print(parent_id, flush=True)
        time.sleep(600)
"""


class _Linear(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_one_epoch(logger) -> None:
    """Lightning's ``fit`` with ``logger``: one epoch of a linear layer on 8 points."""
    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3)), batch_size=4)
    trainer = pl.Trainer(max_epochs=1, logger=logger, accelerator="cpu", enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(_Linear(), train_dataloaders=data)


def _children(tracker, parent_id):
    return tracker.client.search_runs([tracker.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")


def test_lightning_ending_its_logger_does_not_finish_the_fold_run(tracker):
    with tracked_run(tracker.client, tracker.experiment_id, run_name="parent") as parent_id:
        with MlflowFoldRecorder(tracker, parent_id).open_fold(0) as run:
            fit_one_epoch(run.lightning_logger())
            assert tracker.client.get_run(run.run_id).info.status == "RUNNING"
            assert tracker.client.get_metric_history(run.run_id, "train_loss")  # the logger did log
            run.log_table(TABLE, "predictions_fold.csv")
    (child,) = _children(tracker, parent_id)
    assert child.info.status == "FINISHED" and child.data.tags[FOLD_RECORDED_TAG] == "true"


def test_a_process_killed_between_training_and_predictions_leaves_a_fold_to_continue(tmp_path):
    root = tmp_path / "store"
    tracker = MlflowTracker(f"sqlite:///{root}/mlflow.db", "window", artifact_location=str(root / "artifacts"))
    assert tracker.experiment_id  # the store and experiment exist before the second process opens them
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_THEN_WAIT, tracker.tracking_uri, tracker.experiment_name,
                             tracker.artifact_location], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        parent_id = proc.stdout.readline().strip()
        assert parent_id, proc.stderr.read()[-3000:]
        (child,) = _children(tracker, parent_id)
        assert child.info.status == "RUNNING"  # trained, predictions not logged: not FINISHED
    finally:
        proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: the store stays as the window left it
        proc.wait(timeout=60)
    resumed = MlflowFoldRecorder(tracker, parent_id)
    assert resumed.finished_tables(0) is None  # continued, not reused (nor refused for lacking predictions)
    with resumed.open_fold(0) as run:
        assert run.run_id == child.info.run_id  # the same fold run, reopened
        run.log_table(TABLE, "predictions_fold.csv")
    stored = MlflowFoldRecorder(tracker, parent_id).finished_tables(0)
    pd.testing.assert_frame_equal(stored["predictions_fold.csv"], TABLE, check_exact=True)
    assert len(_children(tracker, parent_id)) == 1


def test_a_finished_fold_run_not_recorded_completely_is_not_reused(tracker, caplog):
    client = tracker.client
    with tracked_run(client, tracker.experiment_id, run_name="parent") as parent_id:
        # what an earlier version (Lightning closing the run after fit) left when stopped before its predictions
        child = client.create_run(tracker.experiment_id, tags={PARENT_TAG: parent_id, "dlm_ml.role": "fold",
                                                                "fold": "0"})
        client.set_terminated(child.info.run_id, "FINISHED")
        with caplog.at_level(logging.WARNING, logger="dlm_ml.tracking"):
            assert MlflowFoldRecorder(tracker, parent_id).finished_tables(0) is None
    assert f"its run {child.info.run_id} is FINISHED but was not completely recorded" in caplog.text
