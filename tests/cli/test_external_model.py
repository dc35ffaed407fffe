"""A lab's own network, one Python file and one YAML outside the package: trained by the real
``dlm-train``, recorded with its hashes, and checked by ``dlm-reproduce`` before it re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dlm_ml.utils.hashing import file_sha256, payload_digest

pytestmark = pytest.mark.slow  # trains through the real command, twice

PY = sys.executable
NETWORK = '''"""A lab's network: mean of each input channel, then one linear layer."""
import torch
from torch import nn


class ChannelMeanLinear(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, image, present=None, covariates=None):
        """image [B, C, D, H, W], present [B, C] bool (missing images are zeros) -> logits [B]."""
        pooled = image.mean(dim=(2, 3, 4))
        if present is not None:
            pooled = pooled * present.to(pooled.dtype)
        return self.linear(pooled).squeeze(-1)
'''
MODEL_YAML = """net:
  _target_: my_lab_nets.ChannelMeanLinear
  in_channels: ${dlm_channels:${data.patches.timepoints},${data.patches.modalities}}
optimizer:
  _target_: torch.optim.AdamW
  _partial_: true
  lr: 0.01
scheduler: null
module:
  _target_: dlm_ml.models.module.PCRClassifier
  _partial_: true
"""


def _run(args, cwd, env, timeout=600):
    return subprocess.run([PY, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    lab = root / "lab"
    (lab / "conf" / "model").mkdir(parents=True)
    (lab / "my_lab_nets.py").write_text(NETWORK)
    (lab / "conf" / "model" / "my_net.yaml").write_text(MODEL_YAML)
    pythonpath = os.pathsep.join(p for p in (str(lab), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "DLM_ML_CACHE": str(root / "cache_home"), "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    work = root / "work"  # the command runs elsewhere than the lab's folder: only PYTHONPATH finds the module
    work.mkdir()
    proc = _run(["dlm_ml.train", f"hydra.searchpath=[file://{lab / 'conf'}]", "model=my_net",
                 f"paths.root_dir={root}", "data.synthetic.preset=tiny", "data.n_folds=2", "trainer.max_epochs=1",
                 "evaluation.n_boot=50", "data.preprocess_workers=1", "logger.experiment_name=external"],
                cwd=work, env=env)
    assert proc.returncode == 0, f"dlm-train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    uri = f"sqlite:///{root}/outputs/mlflow/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("external")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`dlm_ml.role` = 'train'")
    return {"root": root, "lab": lab, "work": work, "env": env, "uri": uri, "client": client, "run": run}


def test_external_network_is_recorded_and_checked_by_reproduce(lab_run, tmp_path):
    lab, client, run = lab_run["lab"], lab_run["client"], lab_run["run"]
    run_id = run.info.run_id
    record = json.loads(Path(client.download_artifacts(run_id, "provenance/external_code.json",
                                                       str(tmp_path))).read_text())
    module_file = lab / "my_lab_nets.py"
    assert [(m["module"], m["path"], m["sha256"]) for m in record["modules"]] == [
        ("my_lab_nets", str(module_file.resolve()), file_sha256(module_file))]
    assert record["modules"][0]["targets"] == [{"key": "model.net._target_",
                                                "target": "my_lab_nets.ChannelMeanLinear"}]
    (folder,) = record["searchpath"]
    files = {"model/my_net.yaml": file_sha256(lab / "conf/model/my_net.yaml")}
    assert folder["files"] == files and folder["sha256"] == payload_digest(files, short=False)
    assert run.data.tags["dlm_ml.external_code"] == "2" and run.data.tags["dlm_ml.external_modules"] == "my_lab_nets"
    assert run.data.params["model.net._target_"] == "my_lab_nets.ChannelMeanLinear"

    def reproduce(env):
        return _run(["dlm_ml.cli.reproduce", run_id, "--tracking-uri", lab_run["uri"]], cwd=lab_run["work"],
                    env=env, timeout=900)

    # one byte of the network changed: refused, naming the file and both hashes
    source = module_file.read_bytes()
    try:
        module_file.write_bytes(source.replace(b"nn.Linear(in_channels, 1)", b"nn.Linear(in_channels, 2)"))
        changed_hash = file_sha256(module_file)
        proc = reproduce(lab_run["env"])
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert f"external module my_lab_nets: file {module_file.resolve()} changed since the run" in proc.stderr
        assert f"sha256 recorded {record['modules'][0]['sha256']}, now {changed_hash}" in proc.stderr
    finally:
        module_file.write_bytes(source)

    # the module not on PYTHONPATH: refused, naming the module and the folder to add
    proc = reproduce({k: v for k, v in lab_run["env"].items() if k != "PYTHONPATH"})
    assert proc.returncode == 2
    assert "module my_lab_nets (named by model.net._target_=my_lab_nets.ChannelMeanLinear) cannot be imported" \
        in proc.stderr and f"put {lab.resolve()} on PYTHONPATH" in proc.stderr

    # restored: no refusal, and the re-run composes model=my_net from the recorded search path
    proc = reproduce(lab_run["env"])
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert "cannot be reproduced" not in proc.stderr
    (new,) = client.search_runs([run.info.experiment_id], f"tags.`dlm_ml.reproduces` = '{run_id}'")
    assert new.data.params["model.net._target_"] == "my_lab_nets.ChannelMeanLinear"
    a = pd.read_csv(client.download_artifacts(run_id, "predictions.csv", str(tmp_path / "a")))
    b = pd.read_csv(client.download_artifacts(new.info.run_id, "predictions.csv", str(tmp_path / "b")))
    merged = a.merge(b, on=["patient_id", "lesion_id"])
    assert len(merged) == len(a) == len(b) and (merged.prob_pcr_x - merged.prob_pcr_y).abs().max() <= 1e-6
