"""A pool's workers die with their parent: ``kill -9`` of a process running parallel_map leaves
no worker behind (each would otherwise finish its task, then block for ever holding its memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.waiting import wait_for

psutil = pytest.importorskip("psutil")

#: A script whose two pool workers each record their pid, then work on a long task.
SCRIPT = textwrap.dedent('''
    import os
    import sys
    import time
    from pathlib import Path

    from dlm_ml.utils.parallel import parallel_map


    def slow_lesion(folder: str) -> int:
        Path(folder, f"{os.getpid()}.pid").write_text("")
        time.sleep(600)
        return 0


    if __name__ == "__main__":
        parallel_map(slow_lesion, [sys.argv[1]] * 2, workers=2, progress=False)
''')


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it is dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_the_parent_ends_its_pool_workers(tmp_path):
    script = tmp_path / "pool_job.py"
    script.write_text(SCRIPT)
    pid_dir = tmp_path / "workers"
    pid_dir.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pid_dir)], cwd=tmp_path)
    workers: list[int] = []
    try:
        assert wait_for(lambda: len(list(pid_dir.glob("*.pid"))) == 2 or parent.poll() is not None, 120), \
            "the pool's workers did not start"
        assert parent.poll() is None, f"the pool job ended early with status {parent.returncode}"
        workers = [int(p.stem) for p in pid_dir.glob("*.pid")]
        assert all(psutil.Process(pid).ppid() == parent.pid for pid in workers)

        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_for(lambda: not any(_alive(pid) for pid in workers), 30), \
            f"pool workers {[pid for pid in workers if _alive(pid)]} outlived their killed parent"
    finally:
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=30)
