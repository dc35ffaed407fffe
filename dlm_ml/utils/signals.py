"""SIGTERM as an orderly stop that never lands in the middle of a write.

A cluster scheduler (or ``kill``) ends a job with SIGTERM. :func:`raise_on_sigterm` turns it
into ``KeyboardInterrupt``, so the job unwinds through its ``finally`` blocks and records
itself as failed, as after Ctrl-C. An exception raised from a signal handler lands wherever
the main thread happens to be, though: inside a database commit of the tracking store it can
leave a run half-recorded. Code that writes such state wraps the write in
:func:`interrupts_deferred`; a SIGTERM that arrives meanwhile is raised as soon as the write
is complete.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_deferral_depth = 0
_pending_signal: int | None = None


def _handler(signum: int, frame) -> None:
    global _pending_signal
    if _deferral_depth:
        _pending_signal = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


def raise_on_sigterm() -> bool:
    """Install the handler; returns ``False`` outside the main thread (where a launcher owns
    signals and nothing is installed)."""
    try:
        signal.signal(signal.SIGTERM, _handler)
    except ValueError:
        return False
    return True


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back a SIGTERM-made interrupt until the block is done (blocks may nest; the
    outermost one raises it)."""
    global _deferral_depth, _pending_signal
    _deferral_depth += 1
    try:
        yield
    finally:
        _deferral_depth -= 1
        if not _deferral_depth and _pending_signal is not None:
            signum, _pending_signal = _pending_signal, None
            raise KeyboardInterrupt(f"signal {signum}")
