"""Process pools that stay out of each other's way."""

from __future__ import annotations

import multiprocessing
import os


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def pool_size(requested: int, n_jobs: int) -> int:
    """Workers for a process pool of ``n_jobs`` tasks: at most ``requested``, and 1 inside a
    process that is itself a worker (e.g. a job of a parallel Hydra sweep). A nested pool would
    oversubscribe the cores the outer pool already shares out, and a spawned grandchild cannot
    re-import a worker's ``__main__``."""
    if multiprocessing.parent_process() is not None:
        return 1
    return max(1, min(int(requested or 1), max(n_jobs, 1)))
