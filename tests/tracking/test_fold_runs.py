"""A SIGTERM at an epoch end never cuts the fold's Lightning metric write in half."""

from __future__ import annotations

import os
import signal

import pytest

from dlm_ml.tracking.fold_runs import MlflowFoldRun


def test_sigterm_during_an_epoch_metric_write_is_raised_after_it(tracker, sigterm_handler, monkeypatch):
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    logger = MlflowFoldRun(tracker, run_id).lightning_logger()
    original = logger.experiment.log_batch

    def signalled_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives as the write starts
        return original(*args, **kwargs)

    monkeypatch.setattr(logger.experiment, "log_batch", signalled_write)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"val_loss": 0.5}, step=3)
    # the write completed before the interrupt surfaced
    history = tracker.client.get_metric_history(run_id, "val_loss")
    assert [(m.value, m.step) for m in history] == [(0.5, 3)]
