"""Run and sweep folders are named to the second and a suffix no two processes share: commands
started within the same second (a cluster array job) each get their own folder, and the jobs of a
sweep, in other processes too, share their sweep's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

import dlm_ml.cli.config  # noqa: F401  (registers the dlm_* resolvers)

SUFFIX = re.compile(r"^(\d+)-[0-9a-f]{6}$")
FOLDER = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+-[0-9a-f]{6}$")

RESOLVE = """
import dlm_ml.cli.config
from omegaconf import OmegaConf
twice = OmegaConf.create({"a": "${dlm_unique:}", "b": "${dlm_unique:}"})
print(twice.a, twice.b, OmegaConf.create({"c": "${dlm_unique:}"}).c)
"""

# The real dlm-evaluate entry point with Hydra's clock (the ``now`` resolver that names run
# folders) stopped at one second, as for commands an array job starts together: without run_id
# or predictions it stops with a usage message, after Hydra has made its run folder.
SAME_SECOND = "2030-01-02_03-04-05"
EVALUATE_IN_THE_SAME_SECOND = """
import sys
from datetime import datetime
import hydra.core.utils
from dlm_ml.cli.evaluate import main

class StoppedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2030, 1, 2, 3, 4, 5)

hydra.core.utils.datetime = StoppedClock
main()
"""

# A Hydra app on the real train config whose job reports its process and output folder.
SWEEP_APP = """
import os
import hydra
from dlm_ml.cli.config import CONF_DIR

@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def job(cfg):
    print("JOB", os.getpid(), cfg.paths.output_dir, flush=True)

job()
"""


def _env_without_root() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DLM_ML_ROOT"}


def test_the_suffix_is_stable_within_a_process_and_differs_between_processes(tmp_path):
    first = OmegaConf.create({"a": "${dlm_unique:}"}).a
    again = OmegaConf.create({"a": "${dlm_unique:}", "b": "${dlm_unique:}"})
    assert first == again.a == again.b
    assert SUFFIX.match(first) and SUFFIX.match(first).group(1) == str(os.getpid())
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    values = [out.split() for out, _ in outputs]
    for within in values:
        assert len(set(within)) == 1 and SUFFIX.match(within[0])  # stable within each process
    assert len({v[0] for v in values} | {first}) == 3  # no two processes share one


def test_commands_started_in_the_same_second_get_their_own_run_folders(tmp_path):
    procs = [subprocess.Popen(
        [sys.executable, "-c", EVALUATE_IN_THE_SAME_SECOND, f"model_name={name}",
         # each its own store: two processes creating one SQLite store at once may collide
         f"logger.tracking_uri=sqlite:///{tmp_path}/{name}.db"],
        cwd=tmp_path, env=_env_without_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("first", "second")]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 1 and "dlm-evaluate needs run_id" in err, err[-3000:]
    runs = sorted((tmp_path / "outputs/logs/evaluate/runs").iterdir())
    assert len(runs) == 2, [d.name for d in runs]
    assert all(FOLDER.match(d.name) and d.name.startswith(f"{SAME_SECOND}_") for d in runs), [d.name for d in runs]
    # each process wrote its own folder: its own overrides are there
    overrides = [(d / ".hydra/overrides.yaml").read_text() for d in runs]
    assert sorted(("model_name=first" in text, "model_name=second" in text) for text in overrides) == [
        (False, True), (True, False)]


def test_jobs_of_a_joblib_sweep_share_one_sweep_folder(tmp_path):
    app = tmp_path / "sweep_app.py"
    app.write_text(SWEEP_APP)
    result = subprocess.run([sys.executable, str(app), "-m", "seed=1,2", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2"], cwd=tmp_path, env=_env_without_root(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("JOB ")]
    assert len(jobs) == 2
    sweeps = list((tmp_path / "outputs/logs/train/multiruns").iterdir())
    assert len(sweeps) == 1 and FOLDER.match(sweeps[0].name)
    # the jobs ran in worker processes, not the launcher, yet resolved the launcher's sweep folder
    launcher_pid = SUFFIX.match(sweeps[0].name.split("_")[-1]).group(1)
    assert all(pid != launcher_pid for pid, _ in jobs)
    assert sorted(Path(out) for _, out in jobs) == [sweeps[0] / "0", sweeps[0] / "1"]
