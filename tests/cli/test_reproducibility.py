"""Provenance, dlm-reproduce, resume after SIGTERM, run comparison, sweeps, a real MLflow server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from dlm_ml.data.synthetic import generate_cohort, make_config

pytestmark = pytest.mark.slow  # every test here trains through the real command

PY = sys.executable
BASE = ["data.synthetic.enabled=false", "data.n_folds=3", "trainer.max_epochs=4", "evaluation.n_boot=50",
        "data.preprocess_workers=1", "logger.experiment_name=repro"]


def make_workspace(tmp_path_factory, name: str):
    """A folder of its own with a tiny synthetic cohort and the environment for the commands: (root, cohort, env)."""
    root = tmp_path_factory.mktemp(name)
    cohort = generate_cohort(root / "cohort", make_config("tiny", seed=3), progress=False)
    env = {**os.environ, "DLM_ML_CACHE": str(root / "cache_home"), "PYTHONUNBUFFERED": "1"}
    return root, cohort, env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory, "repro")


def _uri(root: Path) -> str:
    return f"sqlite:///{root}/outputs/mlflow/mlflow.db"


def _args(root, cohort, *extra):
    """Overrides with later ones replacing earlier ones of the same key (Hydra refuses duplicates)."""
    merged = {}
    for override in [f"paths.root_dir={root}", f"data.cohort_dir={cohort}", *BASE, *extra]:
        merged[override.split("=", 1)[0]] = override
    return list(merged.values())


def _train(root, cohort, env, *extra, check=True):
    proc = subprocess.run([PY, "-m", "dlm_ml.train", *_args(root, cohort, *extra)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"dlm-train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _train_runs(client, name="repro"):
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], "tags.`dlm_ml.role` = 'train'",
                              order_by=["attributes.start_time ASC"])


def _predictions(client, run_id, dst):
    return pd.read_csv(client.download_artifacts(run_id, "predictions.csv", str(dst)),
                       dtype={"patient_id": str, "lesion_id": str})


@pytest.fixture(scope="module")
def original(workspace):
    root, cohort, env = workspace
    _train(root, cohort, env)
    client = MlflowClient(_uri(root))
    return client, _train_runs(client)[-1]


def test_provenance_recorded(original, tmp_path):
    client, run = original
    tags = run.data.tags
    for key in ("git_commit", "git_dirty", "cohort_fingerprint", "patch_cache_key", "version.dlm_ml",
                "version.torch", "hardware.python", "hardware.torch_cuda", "seed", "num_workers",
                "dlm_ml.config_sha256"):
        assert tags.get(key), key
    names = {a.path for a in client.list_artifacts(run.info.run_id, "provenance")}
    assert {"provenance/config.yaml", "provenance/overrides.json", "provenance/requirements.lock.txt",
            "provenance/cohort_files.json"} <= names
    lock = Path(client.download_artifacts(run.info.run_id, "provenance/requirements.lock.txt", str(tmp_path)))
    assert any(line.startswith("torch==") for line in lock.read_text().splitlines())
    files = json.loads(Path(client.download_artifacts(run.info.run_id, "provenance/cohort_files.json",
                                                      str(tmp_path))).read_text())
    assert "lesions.csv" in files and not any(f.startswith("truth/") for f in files)
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == tags["cohort_fingerprint"][:32]


def test_reproduce_equals_original(workspace, original, tmp_path):
    root, cohort, env = workspace
    client, run = original
    proc = subprocess.run([PY, "-m", "dlm_ml.cli.reproduce", run.info.run_id, "--tracking-uri", _uri(root)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    new = client.search_runs([run.info.experiment_id], f"tags.`dlm_ml.reproduces` = '{run.info.run_id}'")
    assert len(new) == 1
    a, b = _predictions(client, run.info.run_id, tmp_path / "a"), _predictions(client, new[0].info.run_id,
                                                                                 tmp_path / "b")
    merged = a.merge(b, on=["patient_id", "lesion_id"])
    assert len(merged) == len(a) == len(b)
    assert (merged.prob_pcr_x - merged.prob_pcr_y).abs().max() <= 1e-6
    assert "max |Δ prob_pcr| over lesions" in proc.stdout and "model_auc" in proc.stdout


def test_reproduce_refuses_changed_cohort_and_code(workspace, original, tmp_path):
    root, cohort, env = workspace
    client, run = original
    readings = cohort / "readings.csv"
    saved = readings.read_text()
    try:
        lines = saved.splitlines()
        readings.write_text("\n".join(lines[:-1]) + "\n")  # drop one reading
        proc = subprocess.run([PY, "-m", "dlm_ml.cli.reproduce", run.info.run_id, "--tracking-uri", _uri(root)],
                              cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert "1 file(s) changed since the run: readings.csv" in proc.stderr
    finally:
        readings.write_text(saved)
    # a run recorded at another commit is refused, naming that commit
    fake = client.create_run(run.info.experiment_id, tags={**run.data.tags, "git_commit": "0" * 40,
                                                           "git_dirty": "false"})
    for artifact in ("provenance/cohort_files.json", "provenance/overrides.json"):
        local = client.download_artifacts(run.info.run_id, artifact, str(tmp_path))
        client.log_artifact(fake.info.run_id, local, "provenance")
    proc = subprocess.run([PY, "-m", "dlm_ml.cli.reproduce", fake.info.run_id, "--tracking-uri", _uri(root)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"the run was made at commit {'0' * 40}" in proc.stderr


def _train_in_background(root: Path, cohort: Path, env: dict, *extra: str):
    """Start ``dlm-train`` without waiting for it; returns the process and a function listing the
    run folders made since (the new run's among them)."""
    log_dir = root / "outputs/logs/train/runs"
    before = set(log_dir.iterdir()) if log_dir.is_dir() else set()
    proc = subprocess.Popen([PY, "-m", "dlm_ml.train", *_args(root, cohort, *extra)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, lambda: (set(log_dir.iterdir()) - before) if log_dir.is_dir() else set()


@pytest.mark.parametrize("fold_workers", [1, 2])
def test_resume_after_sigterm_equals_uninterrupted(workspace, tmp_path, fold_workers):
    # fold_workers=2: the stop ends both fold processes; their folds are trained again from their checkpoints
    root, cohort, env = workspace
    extra = ["trainer.max_epochs=25", "callbacks.early_stopping.patience=100",
             f"logger.experiment_name=resume_{fold_workers}", f"fold_workers={fold_workers}"]
    _train(root, cohort, env, *extra)
    client = MlflowClient(_uri(root))
    uninterrupted = _train_runs(client, f"resume_{fold_workers}")[-1]
    proc, new_run_folders = _train_in_background(root, cohort, env, *extra)
    deadline = time.time() + 300
    checkpoint = None
    while time.time() < deadline and checkpoint is None:
        candidates = [d / "fold_1/resume/last.ckpt" for d in new_run_folders()]
        checkpoint = next((c for c in candidates if c.is_file()), None)
        time.sleep(0.05)
    assert checkpoint is not None, "training never reached fold 1"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    killed = _train_runs(client, f"resume_{fold_workers}")[-1]
    assert killed.info.status == "FAILED"
    assert killed.info.run_id != uninterrupted.info.run_id
    _train(root, cohort, env, *extra, "resume=true")
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags.get("dlm_ml.resumed") == "true"
    assert len(_train_runs(client, f"resume_{fold_workers}")) == 2  # resumed into the same parent, no new one
    children = client.search_runs([killed.info.experiment_id], f"tags.`mlflow.parentRunId` = '{killed.info.run_id}'")
    assert sorted(c.data.tags["fold"] for c in children) == ["0", "1", "2"]  # none duplicated, none missing
    a = _predictions(client, uninterrupted.info.run_id, tmp_path / "a")
    b = _predictions(client, killed.info.run_id, tmp_path / "b")
    merged = a.merge(b, on=["patient_id", "lesion_id"])
    assert len(merged) == len(a) and (merged.prob_pcr_x - merged.prob_pcr_y).abs().max() <= 1e-6
    # elapsed_s counts the whole run: the session killed by SIGTERM logged its time, the resumed
    # session's total carries it on
    history = [m.value for m in client.get_metric_history(killed.info.run_id, "elapsed_s")]
    assert len(history) == 2 and history[1] > history[0] > 0
    assert resumed.data.metrics["elapsed_s"] == history[1]


def test_compare_table(workspace, tmp_path):
    root, cohort, env = workspace
    for lr in ("0.001", "0.003"):
        _train(root, cohort, env, f"model.optimizer.lr={lr}", "logger.experiment_name=compare")
    out = tmp_path / "cmp"
    proc = subprocess.run([PY, "-m", "dlm_ml.cli.compare", "--experiment", "compare", "--tracking-uri", _uri(root),
                           "--out", str(out)], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "comparison.csv")
    models = table[table.row == "model"]
    assert sorted(models["model.optimizer.lr"].astype(str)) == ["0.001", "0.003"]
    assert set(table.row) == {"model", "reader R1", "reader R2", "reader R3"}
    assert len(table[table.row == "reader R1"]) == 1  # readers once per cohort
    client = MlflowClient(_uri(root))
    runs = {r.info.run_id: r for r in _train_runs(client, "compare")}
    for row in models.itertuples():
        m = runs[row.run_id].data.metrics
        assert row.auc == pytest.approx(m["model_auc"])
        assert row.auc_ci == f"{m['model_auc']:.3f} ({m['model_auc_ci_low']:.3f}–{m['model_auc_ci_high']:.3f})"
    assert "| model |" in (out / "comparison.md").read_text()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_groups_runs(workspace, launcher):
    root, cohort, env = workspace
    name = f"sweep_{launcher}"
    extra = [f"logger.experiment_name={name}", "data.n_folds=2", "trainer.max_epochs=2", "seed=1,2"]
    if launcher == "joblib":
        extra += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = subprocess.run([PY, "-m", "dlm_ml.train", "-m", *_args(root, cohort, *extra)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    client = MlflowClient(_uri(root))
    runs = _train_runs(client, name)
    assert len(runs) == 2 and len({r.info.run_id for r in runs}) == 2
    assert len({r.data.tags["dlm_ml.sweep"] for r in runs}) == 1
    assert sorted(r.data.tags["dlm_ml.sweep_job"] for r in runs) == ["0", "1"]
    assert sorted(r.data.params["seed"] for r in runs) == ["1", "2"]
    for run in runs:
        assert run.info.status == "FINISHED" and "mlflow.parentRunId" not in run.data.tags
        children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        assert sorted(c.data.tags["fold"] for c in children) == ["0", "1"]
        assert all(c.data.params.get("seed") is None for c in children)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_mlflow_server(workspace, tmp_path):
    root, cohort, env = workspace
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(PY).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--default-artifact-root",
         (tmp_path / "server_artifacts").as_uri(), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                with urllib.request.urlopen(uri + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        _train(root, cohort, env, f"logger.tracking_uri={uri}", "logger.experiment_name=server",
               "logger.artifact_location=null")
        client = MlflowClient(uri)
        runs = _train_runs(client, "server")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        run = runs[0]
        assert run.data.params["data.n_folds"] == "3" and "model_auc" in run.data.metrics
        assert {"predictions.csv", "provenance"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_unreachable_server_fails_fast(workspace):
    root, cohort, env = workspace
    port = _free_port()  # nothing listens there
    proc = _train(root, cohort, env, f"logger.tracking_uri=http://127.0.0.1:{port}", check=False)
    assert proc.returncode != 0
    # before any work: nothing of the cohort or the patches was touched (the time it takes is
    # measured in benchmarks/reproducibility.py)
    assert "unreachable" in proc.stderr and "patch cache" not in proc.stdout + proc.stderr


def test_compare_notebook_executes(workspace, tmp_path):
    """The comparison notebook runs top to bottom on a real tracking store."""
    root, cohort, env = workspace
    client = MlflowClient(_uri(root))
    if client.get_experiment_by_name("compare") is None:
        _train(root, cohort, env, "logger.experiment_name=compare")
    notebook = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks/compare_runs.ipynb", as_version=4)
    os.environ["DLM_ML_TRACKING_URI"] = _uri(root)
    os.environ["DLM_ML_EXPERIMENT"] = "compare"
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("DLM_ML_TRACKING_URI")
        os.environ.pop("DLM_ML_EXPERIMENT")
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "finished training run(s) in experiment 'compare'" in outputs
    assert "| model |" in outputs
