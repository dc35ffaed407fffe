"""parallel_map: results in input order, a task's exception raised in the caller, in-process
with one worker and in spawned processes with two."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dlm_ml.utils.parallel import parallel_map, pool_size


def _square_late_first(x: int) -> tuple[int, int]:
    # Earlier items finish later, so completion order is the reverse of input order.
    time.sleep(0.05 * (4 - x))
    return x * x, os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"lesion {x}: cannot be read")
    return x


_INITIALISED: list[str] = []


def _remember(tag: str) -> None:
    _INITIALISED.append(tag)


@pytest.mark.parametrize("workers", [1, 2])
def test_results_keep_input_order(workers):
    results = parallel_map(_square_late_first, range(5), workers=workers, progress=False)
    assert [r[0] for r in results] == [0, 1, 4, 9, 16]
    in_this_process = {pid == os.getpid() for _, pid in results}
    assert in_this_process == ({True} if workers == 1 else {False})


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_exception_is_raised_to_the_caller(workers):
    with pytest.raises(ValueError, match="lesion 3: cannot be read"):
        parallel_map(_fail_on_three, range(6), workers=workers, progress=False)


def test_one_worker_runs_the_initializer_here():
    _INITIALISED.clear()
    assert parallel_map(_fail_on_three, [1, 2], workers=1, progress=False, initializer=_remember,
                        initargs=("threads",)) == [1, 2]
    assert _INITIALISED == ["threads"]


def test_empty_input_and_pool_size():
    assert parallel_map(_fail_on_three, [], workers=2, progress=False) == []
    assert pool_size(8, 3) == 3 and pool_size(0, 5) == 1 and pool_size(2, 0) == 1


def _slow_or_failing(item: tuple[str, str]) -> str:
    """``("slow", folder)`` records its pid, works 20 s, then leaves ``done``; ``("fail", folder)``
    waits until the slow task runs, then fails."""
    kind, folder = item
    started = os.path.join(folder, "slow.pid")
    if kind == "slow":
        with open(started + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.replace(started + ".tmp", started)
        time.sleep(20)
        open(os.path.join(folder, "done"), "w").close()
        return kind
    for _ in range(600):
        if os.path.exists(started):
            break
        time.sleep(0.05)
    raise ValueError("fold 1: diverged")


def _gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie nobody has waited for yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_failed_task_stops_the_tasks_still_running(tmp_path):
    # Otherwise the slow task's worker runs its item to the end (for a fold, minutes) after the
    # error has reached the caller, and the interpreter waits for it at exit.
    with pytest.raises(ValueError, match="fold 1: diverged"):
        parallel_map(_slow_or_failing, [("slow", str(tmp_path)), ("fail", str(tmp_path))], workers=2,
                     progress=False)
    pid = int((tmp_path / "slow.pid").read_text())
    for _ in range(100):  # the terminated worker needs a moment to exit
        if _gone(pid):
            break
        time.sleep(0.05)
    assert _gone(pid), "the worker of the slow task still runs after the call returned"
    assert not (tmp_path / "done").exists()


# A program whose every import leaves a marker file: how many processes imported it.
_MAIN_PROGRAM = """
import os, sys
open(os.path.join(sys.argv[1], f"imported_by_{os.getpid()}"), "w").close()
from dlm_ml.utils.parallel import parallel_map

def negate(x):
    return -x

class Number(int):
    pass

if __name__ == "__main__":
    fn = negate if sys.argv[2] == "own" else abs
    items = [Number(-v) for v in range(1, 5)] if sys.argv[2] == "own_items" else [-1, -2, -3, -4]
    print(parallel_map(fn, items, workers=2, progress=False))
"""


@pytest.mark.parametrize("task", ["library", "own", "own_items"])
def test_workers_import_the_main_module_only_for_a_task_defined_there(tmp_path, task):
    """A spawned worker would import the parent's main program first (for dlm-train: torch,
    Lightning, MLflow, seconds per worker); it does only when the task, or its items' class,
    was defined there."""
    program = tmp_path / "program.py"
    program.write_text(_MAIN_PROGRAM)
    markers = tmp_path / "markers"
    markers.mkdir()
    out = subprocess.run([sys.executable, str(program), str(markers), task], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[1, 2, 3, 4]"
    importers = len(list(markers.iterdir()))
    assert importers == (1 if task == "library" else 3), importers  # the parent alone, or it and both workers
