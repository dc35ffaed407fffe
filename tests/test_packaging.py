"""A wheel built from the checkout works on its own: configuration, entry points, the synthetic generator.

The wheel is installed (not editable) into a separate folder that is put first on the path,
and the commands run from a folder outside the checkout, so nothing can be found through
the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("wheel")
    wheel_dir, target = root / "dist", root / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, text=True)
    wheel = next(wheel_dir.glob("dlm_ml-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(target), "DLM_ML_ROOT": str(root / "work")}
    return target, env, wheel


def _run(args, env, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_ships_the_configuration(installed):
    _, _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("dlm_ml/conf/train.yaml", "dlm_ml/conf/evaluate.yaml", "dlm_ml/conf/preprocess.yaml"):
        assert config in names


def test_installed_package_is_the_one_imported(installed, tmp_path):
    target, env, _ = installed
    proc = _run([sys.executable, "-c", "import dlm_ml; print(dlm_ml.__file__)"], env, tmp_path)
    assert Path(proc.stdout.strip()).resolve().is_relative_to(target.resolve())


def test_train_help_lists_the_config_groups(installed, tmp_path):
    target, env, _ = installed
    proc = _run([sys.executable, str(target / "bin" / "dlm-train"), "--help"], env, tmp_path)
    for group in ("data:", "model:", "trainer:", "experiment:"):
        assert group in proc.stdout


def test_synth_writes_a_cohort(installed, tmp_path):
    target, env, _ = installed
    out = tmp_path / "cohort"
    _run([sys.executable, str(target / "bin" / "dlm-synth"), str(out), "--preset", "tiny", "--quiet"], env, tmp_path)
    for table in ("cohort.yaml", "patients.csv", "images.csv", "lesions.csv", "outcomes.csv", "readings.csv"):
        assert (out / table).is_file()
