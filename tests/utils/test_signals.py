"""SIGTERM becomes an interrupt, but never inside a block that writes tracked state."""

from __future__ import annotations

import os
import signal

import pytest

from dlm_ml.utils.signals import interrupts_deferred


def test_sigterm_raises_keyboard_interrupt(sigterm_handler):
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_inside_a_deferred_block_waits_for_its_end(sigterm_handler):
    finished_write = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            with interrupts_deferred():  # nested: only the outermost block raises
                pass
            finished_write = True
    assert finished_write


def test_no_interrupt_without_a_signal(sigterm_handler):
    with interrupts_deferred():
        pass
