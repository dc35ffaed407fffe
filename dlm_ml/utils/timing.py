"""Wall time of the named stages of one process (synthesis, validation, registration, patch
extraction, evaluation, ...), kept in the order they ended, for a run's timing table.

The record is process-wide: the code that does a stage wraps it in :func:`stage` wherever it
runs, and the command that owns the process reads the rows at its end (:func:`stage_rows`) and
clears them before its next job (:func:`reset_stages`; a sweep runs several jobs in one
process). Only the process that runs a stage records it: work a stage hands to pool workers is
inside the parent's stage, and the workers' own records are never read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from dlm_ml.utils.parallel import available_cores

#: Column names of :func:`stage_rows`, in order.
STAGE_COLUMNS = ("stage", "seconds", "cores")
#: The stage of folds trained several at once (wall time of them all): the rows of the single
#: folds then overlap in time, and this row, not their sum, is what they cost the run.
PARALLEL_FOLDS_STAGE = "folds in parallel"
#: What a command prints before the path of the timing table it wrote (a caller that runs the
#: command in a child process, like the demo, reads the path from that line).
TIMINGS_LINE_PREFIX = "stage times: "


@dataclass(frozen=True)
class StageTime:
    """One stage: ``stage`` its name, ``seconds`` its wall time in seconds, ``cores`` the CPU
    cores the process could run on while it ran (its affinity mask)."""

    stage: str
    seconds: float
    cores: int


_record: list[StageTime] = []
_lock = threading.Lock()


def record_stage(name: str, seconds: float, cores: int | None = None) -> StageTime:
    """Append a stage timed elsewhere (e.g. a fold whose start and end a tracking store
    recorded); ``cores`` defaults to this process's available cores."""
    entry = StageTime(str(name), float(seconds), available_cores() if cores is None else int(cores))
    with _lock:
        _record.append(entry)
    return entry


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage ``name``. A block that raises is recorded too: its time was
    spent, and a failed run's table should show where."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record_stage(name, time.perf_counter() - started)


def stage_rows() -> list[dict]:
    """The stages recorded so far, in the order they ended: dicts with :data:`STAGE_COLUMNS`."""
    with _lock:
        return [asdict(entry) for entry in _record]


def reset_stages() -> None:
    """Forget every recorded stage (at the start of a job)."""
    with _lock:
        _record.clear()


def wall_seconds(rows) -> float:
    """Seconds a table of stage rows (dicts or a frame's records with ``stage, seconds``) cost
    the process: their sum, except that with a :data:`PARALLEL_FOLDS_STAGE` row the single folds'
    rows (``fold k``), which ran inside it at the same time, are not added again."""
    rows = list(rows)
    parallel = any(r["stage"] == PARALLEL_FOLDS_STAGE for r in rows)
    return float(sum(r["seconds"] for r in rows if not (parallel and str(r["stage"]).startswith("fold "))))
