"""Process pools that stay out of each other's way."""

from __future__ import annotations

import multiprocessing


def pool_size(requested: int, n_jobs: int) -> int:
    """Workers for a process pool of ``n_jobs`` tasks: at most ``requested``, and 1 inside a
    process that is itself a worker (e.g. a job of a parallel Hydra sweep). A nested pool would
    oversubscribe the cores the outer pool already shares out, and a spawned grandchild cannot
    re-import a worker's ``__main__``."""
    if multiprocessing.parent_process() is not None:
        return 1
    return max(1, min(int(requested or 1), max(n_jobs, 1)))
