"""Waiting in tests for something another process does (a server answering, workers exiting)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], limit_s: float, poll_s: float = 0.2) -> bool:
    """Poll ``condition`` every ``poll_s`` seconds until it holds or ``limit_s`` seconds have
    passed; returns its last value. A bound on waiting, never an assertion on speed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return condition()
