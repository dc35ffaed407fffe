"""Process pools that stay out of each other's way, with one start method and a progress bar."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
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
    with ProcessPoolExecutor(n_workers, mp_context=context, initializer=_worker_start,
                             initargs=(os.getpid(), initializer, initargs)) as pool:
        # the workers start as the tasks are submitted (a spawn pool starts them on demand)
        with _main_module_left_alone(fn, initializer, *{type(item) for item in items}):
            futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            # A failed task or a stop (SIGTERM raised as KeyboardInterrupt): the tasks still
            # running are stopped too (SIGTERM to their workers); otherwise each would run its item
            # to the end (for a fold, minutes) and the interpreter would wait for it at exit.
            # The workers are listed before the shutdown, which forgets them.
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                if process.is_alive():
                    process.terminate()
            raise


@contextmanager
def _main_module_left_alone(*needed: Any) -> Iterator[None]:
    """Workers started inside this block do not import the parent's ``__main__`` module.

    A spawned worker first imports its parent's main module, so that what was defined there can
    be unpickled. For ``dlm-train`` or ``python -m dlm_ml.train`` that module is the whole
    command line (torch, Lightning, MONAI, MLflow): about 8 s of CPU per worker on a 2-core
    laptop, for every pool, whatever the tasks need; a registration worker needs SimpleITK.
    Every worker is given nothing of ``__main__`` instead (it reads ``__spec__`` and
    ``__file__`` when it starts), unless something in ``needed`` (the task, the initializer, the
    items' classes) was defined there."""
    main = sys.modules.get("__main__")
    if main is None or any(getattr(n, "__module__", None) == "__main__" for n in needed if n is not None):
        yield
        return
    hidden = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(hidden)
        if "__spec__" not in hidden:
            del main.__spec__


#: Linux ``prctl`` option: the signal the kernel sends a process when its parent dies.
_PR_SET_PDEATHSIG = 1
#: How often a worker without ``prctl`` checks that its parent is alive, in seconds.
_PARENT_POLL_S = 1.0


def _worker_start(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Every pool worker's initializer: die with the parent, then the caller's ``initializer``.

    A parent killed outright (``kill -9``, the out-of-memory killer) cannot shut its pool down;
    its workers would finish their task, then block for ever on the dead parent's queues, each
    holding its memory. On Linux the kernel kills the worker when its parent dies
    (``PR_SET_PDEATHSIG``; it fires when the parent *thread* that started the worker ends, and
    :func:`_run` starts and shuts the pool down in one thread, which outlives its workers).
    Elsewhere a daemon thread polls the parent id.
    """
    if not _kill_me_with_parent():
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                         name="exit-with-parent").start()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


def _kill_me_with_parent() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)
