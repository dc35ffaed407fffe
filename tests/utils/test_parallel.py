"""parallel_map: results in input order, a task's exception raised in the caller, in-process
with one worker and in spawned processes with two."""

from __future__ import annotations

import os
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
