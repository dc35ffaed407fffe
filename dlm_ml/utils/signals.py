"""SIGTERM as an orderly stop that never lands in the middle of a write, and is never lost.

A cluster scheduler (or ``kill``) ends a job with SIGTERM. :func:`raise_on_sigterm` turns it
into ``KeyboardInterrupt``, so the job unwinds through its ``finally`` blocks and records
itself as failed, as after Ctrl-C. An exception raised from a signal handler lands wherever
the main thread happens to be, though: inside a database commit of the tracking store it can
leave a run half-recorded. Code that writes such state wraps the write in
:func:`interrupts_deferred`; a SIGTERM that arrives meanwhile is raised as soon as the write
is complete.

It can also land inside a finaliser (``__del__``, a weakref callback, an ``atexit`` hook),
where Python prints "Exception ignored" and drops it: the job would then finish as if nothing
had happened. The handler therefore records that SIGTERM arrived before it raises, and the
places that decide a run's fate (a run's success path, the end of each fold) call
:func:`raise_if_sigterm_received`, which raises the interrupt again if it was swallowed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_deferral_depth = 0
_pending_signal: int | None = None
#: The signal number of the first SIGTERM since :func:`raise_on_sigterm` installed the handler;
#: stays set (a stop is final), so a swallowed interrupt is still seen at the next check.
_received_signal: int | None = None


def _handler(signum: int, frame) -> None:
    global _pending_signal, _received_signal
    # Recorded before anything is raised: the raise may be swallowed, the record is not.
    if _received_signal is None:
        _received_signal = signum
    if _deferral_depth:
        _pending_signal = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


def raise_on_sigterm() -> bool:
    """Install the handler, with no SIGTERM recorded yet (a second job in the same process
    starts clean); returns ``False`` outside the main thread (where a launcher owns signals and
    nothing is installed)."""
    global _pending_signal, _received_signal
    try:
        signal.signal(signal.SIGTERM, _handler)
    except ValueError:
        return False
    _pending_signal = _received_signal = None
    return True


def sigterm_received() -> bool:
    """Whether SIGTERM arrived since the handler was installed (``False`` once another handler
    replaced it: the record then speaks of a job that is over)."""
    return _received_signal is not None and signal.getsignal(signal.SIGTERM) is _handler


def raise_if_sigterm_received() -> None:
    """Raise ``KeyboardInterrupt`` if SIGTERM arrived since the handler was installed: a stop
    whose interrupt was swallowed (e.g. raised inside a finaliser) must not let the job carry
    on, nor let a run be recorded as finished. Inside :func:`interrupts_deferred` a pending
    signal is left to the block's end, as the handler leaves it."""
    if sigterm_received() and not _deferral_depth:
        raise KeyboardInterrupt(f"signal {_received_signal} (received earlier; its interrupt was swallowed)")


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
