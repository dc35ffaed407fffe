"""Output paths of a multirun, the synthetic preset named null, and truthful --help of the commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from dlm_ml.cli.config import CONF_DIR, config_groups
from tests.conf.test_compose import compose_command

# A Hydra app on the real train config whose job only reports the paths it resolved: the multirun
# machinery (sweep folder, job folders) is the real one, without training a model.
PATHS_APP = """
import hydra
from dlm_ml.cli.config import CONF_DIR

@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def job(cfg):
    print("ROOT", cfg.paths.root_dir, "OUTPUT", cfg.paths.output_dir, "COHORT", cfg.data.cohort_dir)

job()
"""


def _env_without_root() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DLM_ML_ROOT"}


def test_multirun_resolves_paths_from_the_folder_it_starts_in(tmp_path):
    app = tmp_path / "paths_app.py"
    app.write_text(PATHS_APP)
    work = tmp_path / "somewhere"
    work.mkdir()
    result = subprocess.run([sys.executable, str(app), "-m", "seed=1,2"], cwd=work, env=_env_without_root(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("ROOT ")]
    assert len(lines) == 2
    sweeps = list((work / "outputs/logs/train/multiruns").iterdir())
    assert len(sweeps) == 1
    for num, line in enumerate(lines):
        assert Path(line[1]) == work
        assert Path(line[3]) == sweeps[0] / str(num)
        # each job's synthetic cohort is the one of its own seed (seed=1,2 sets data.synthetic.seed)
        assert Path(line[5]) == work / f"outputs/data/synthetic_default_n100_seed{num + 1}"


def test_preset_null_unquoted_quoted_and_experiment_all_name_the_null_cohort(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for overrides in (["data.synthetic.preset=null"], ["data.synthetic.preset='null'"], ["experiment=null_effect"]):
        data = compose_command("train", overrides).data
        assert data.synthetic.preset in (None, "null"), overrides
        assert Path(data.cohort_dir).name == "synthetic_null_n100_seed42", overrides
    with pytest.raises(InterpolationResolutionError, match="unknown preset 'nope'"):
        OmegaConf.to_container(compose_command("train", ["data.synthetic.preset=nope"]).data, resolve=True)


def test_preprocess_help_lists_only_the_groups_it_takes(tmp_path):
    command = Path(sys.executable).with_name("dlm-preprocess")
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, env=_env_without_root(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    section = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0] for line in section.splitlines() if ": " in line}
    assert listed == set(config_groups("preprocess"))
    groups_in_conf = {p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"model", "experiment"} <= groups_in_conf and not {"model", "experiment"} & listed
    assert result.stdout.startswith("dlm-preprocess: validate a cohort")
