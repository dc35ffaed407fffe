"""Two processes opening one fresh SQLite tracking store at once (parallel sweep jobs, two
commands started together) both get a working store: its creation is serialised."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Opens ``sqlite:///<root>/<round>/mlflow.db`` in each round, both processes released together
#: (each waits for the other's "ready" file), and prints the experiment id it got; stops when the
#: other process failed.
OPENER = textwrap.dedent('''
    import sys
    import time
    from pathlib import Path

    from dlm_ml.tracking.client import get_experiment_id, open_client

    root, me, other, rounds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    for round_ in range(rounds):
        (root / f"ready_{round_}_{me}").touch()
        while not (root / f"ready_{round_}_{other}").exists():
            if (root / f"failed_{other}").exists():
                sys.exit(f"process {other} failed")
            time.sleep(0.001)
        try:
            client = open_client(f"sqlite:///{root}/{round_}/mlflow.db")
            print(round_, get_experiment_id(client, "sweep"), flush=True)
        except BaseException:
            (root / f"failed_{me}").touch()
            raise
''')

ROUNDS = 2


@pytest.mark.slow  # two processes importing MLflow and building four stores: 15-35 s
def test_two_processes_create_one_fresh_sqlite_store_together(tmp_path):
    opener = tmp_path / "opener.py"
    opener.write_text(OPENER)
    processes = [subprocess.Popen([sys.executable, str(opener), str(tmp_path), me, other, str(ROUNDS)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for me, other in (("a", "b"), ("b", "a"))]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    # both processes got the same experiment of each store
    seen = [dict(line.split() for line in stdout.splitlines()) for stdout, _ in outputs]
    assert len(seen[0]) == ROUNDS and seen[0] == seen[1]
