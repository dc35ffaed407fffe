"""Process pools that stay out of each other's way, with one start method and a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from dlm_ml.utils.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")

#: Every pool starts its workers by "spawn": safe whatever the parent imported (torch,
#: ITK and BLAS threads are not fork-safe), and identical on Linux and macOS.
START_METHOD = "spawn"


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


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 1, desc: str | None = None,
                 unit: str = "item", progress: bool = True, initializer: Callable[..., Any] | None = None,
                 initargs: tuple = ()) -> list[R]:
    """``[fn(x) for x in items]`` over up to ``workers`` processes (see :func:`pool_size`),
    results in the order of ``items``, with a progress bar. ``fn`` must be importable (a
    module-level function). With one worker everything runs in this process, so
    ``initializer`` is called here first. The first exception of a task is raised here."""
    items = list(items)
    results: list[Any] = [None] * len(items)
    n_workers = pool_size(workers, len(items))
    with progress_bar(total=len(items), desc=desc, unit=unit, enabled=progress and bool(items)) as bar:
        for index, result in _run(fn, items, n_workers, initializer, initargs):
            results[index] = result
            bar.update()
    return results


def _run(fn, items, n_workers, initializer, initargs) -> Iterator[tuple[int, Any]]:
    if n_workers == 1:
        if initializer is not None:
            initializer(*initargs)
        for index, item in enumerate(items):
            yield index, fn(item)
        return
    context = multiprocessing.get_context(START_METHOD)
    with ProcessPoolExecutor(n_workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
