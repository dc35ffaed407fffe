"""A SIGTERM whose interrupt lands in a finaliser, where Python prints "Exception ignored" and
drops it, still stops the job: the run is recorded FAILED and the interrupt surfaces."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from dlm_ml.tracking.run import tracked_run
from dlm_ml.utils.signals import raise_if_sigterm_received, raise_on_sigterm, sigterm_received


class _SignalledWhileClosing:
    """An object in a reference cycle whose finaliser is running when SIGTERM arrives."""

    def __init__(self):
        self.cycle = self

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # still closing: the handler's interrupt is raised in here


def _swallowed_sigterm() -> list:
    """Collect a finaliser while SIGTERM arrives; returns the exceptions Python ignored."""
    ignored, hook = [], sys.unraisablehook
    sys.unraisablehook = ignored.append
    try:
        _SignalledWhileClosing()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    return ignored


def test_a_sigterm_swallowed_by_a_finaliser_still_fails_the_run(tracker, sigterm_handler):
    client = tracker.client
    body_completed = False
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        with tracked_run(client, tracker.experiment_id, run_name="finaliser") as run_id:
            ignored = _swallowed_sigterm()
            body_completed = True
    # the interrupt really was swallowed (the body carried on), and the run still failed
    assert body_completed
    assert [type(u.exc_value) for u in ignored] == [KeyboardInterrupt]
    assert client.get_run(run_id).info.status == "FAILED"


def test_a_loop_that_checks_after_each_item_stops_after_a_swallowed_sigterm(sigterm_handler):
    done = []
    with pytest.raises(KeyboardInterrupt):
        for fold in range(3):
            if fold == 1:
                _swallowed_sigterm()
            done.append(fold)
            raise_if_sigterm_received()
    assert done == [0, 1]


def test_installing_the_handler_again_starts_clean(tracker, sigterm_handler):
    _swallowed_sigterm()
    assert sigterm_received()
    assert raise_on_sigterm()  # a second job in the same process
    assert not sigterm_received()
    with tracked_run(tracker.client, tracker.experiment_id, run_name="after") as run_id:
        raise_if_sigterm_received()
    assert tracker.client.get_run(run_id).info.status == "FINISHED"


def test_a_sigterm_recorded_under_a_replaced_handler_no_longer_counts(tracker, sigterm_handler):
    _swallowed_sigterm()
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # e.g. the job is over, a test restored it
    try:
        assert not sigterm_received()
        raise_if_sigterm_received()
    finally:
        signal.signal(signal.SIGTERM, previous)
