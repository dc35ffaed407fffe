"""End to end through the real console entry points, with MLflow in a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from dlm_ml.stats import roc_auc

pytestmark = pytest.mark.slow  # trains through the real command

BIN = Path(sys.executable).parent


def _cli(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"console script {name} is not installed"
    return path


def _run(args, cwd, env=None, timeout=900):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


TRAIN_OVERRIDES = [
    "data.synthetic.preset=easy", "data.synthetic.n_patients=36", "data.n_folds=3", "trainer.max_epochs=12",
    "data.patches.patch_size_mm=32", "data.patches.spacing_mm=2.0", "evaluation.n_boot=200",
    "data.preprocess_workers=1", "logger.experiment_name=e2e",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {"DLM_ML_CACHE": str(root / "cache_home")}
    proc = _run([_cli("dlm-train"), f"paths.root_dir={root}", *TRAIN_OVERRIDES], cwd=root, env=env)
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id], "tags.`dlm_ml.role` = 'train'")
    assert len(runs) == 1
    return root, env, proc, client, runs[0]


def test_tracked_params_tags_and_children(trained):
    root, env, proc, client, run = trained
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data.n_folds"] == "3" and params["data.synthetic.preset"] == "easy"
    assert params["data.patches.timepoints"] == '["baseline", "presurgery"]'
    tags = run.data.tags
    for tag in ("git_commit", "cohort_fingerprint", "patch_cache_key", "seed", "folds_sha256", "version.torch",
                "hardware.python"):
        assert tags.get(tag), f"missing tag {tag}"
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(c.data.tags["fold"] for c in children) == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert all("val_loss" in c.data.metrics and "test_auc" in c.data.metrics for c in children)
    for child in children:
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"checkpoints", "predictions_fold.csv", "validation_predictions_fold.csv"} <= names
        assert child.data.tags["torch_deterministic"] == "true"
    # determinism is enabled before it is recorded (trainer.deterministic is true by default)
    assert tags["torch_deterministic"] == "true"
    # named after the overrides that change results (paths.root_dir and logger.* do not)
    assert run.info.run_name == ",".join(o for o in TRAIN_OVERRIDES if not o.startswith("logger."))


def test_logs_have_no_progress_bar_redraws(trained):
    """stdout is a pipe here, not a terminal: no carriage-return progress bar in the captured output."""
    root, env, proc, client, run = trained
    redraws = [chunk for chunk in (proc.stdout + proc.stderr).split("\n") if "\r" in chunk and "Epoch" in chunk]
    assert not redraws, redraws[:3]


def test_artifacts_and_predictions_table(trained, tmp_path):
    root, env, proc, client, run = trained
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"provenance", "folds.csv", "predictions.csv", "thresholds.csv", "evaluation"} <= names
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/roc.png", "evaluation/metrics.json", "evaluation/headline.csv"} <= evaluation
    pred = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp_path)),
                       dtype={"patient_id": str, "lesion_id": str})
    cohort_dir = Path(run.data.params["data.cohort_dir"])
    lesions = pd.read_csv(cohort_dir / "lesions.csv", dtype=str)
    outcomes = pd.read_csv(cohort_dir / "outcomes.csv", dtype=str)
    # the required columns, then the design's name of each test fold
    assert list(pred.columns) == ["patient_id", "lesion_id", "fold", "prob_pcr", "pcr", "fold_label"]
    assert (pred.fold_label == "fold " + pred.fold.astype(str)).all()
    assert len(pred) == len(outcomes) == len(lesions)  # one row per lesion, none lost
    assert not pred.duplicated(["patient_id", "lesion_id"]).any()
    assert pred.groupby("patient_id").fold.nunique().max() == 1  # no patient in two folds
    auc = roc_auc(pred.pcr.to_numpy(), pred.prob_pcr.to_numpy())
    assert auc > 0.7, f"easy cohort should be learnable, got out-of-fold AUC {auc:.3f}"
    assert run.data.metrics["model_auc"] == pytest.approx(auc)
    assert "AUC (95% CI, patient bootstrap)" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout


def test_evaluate_on_run_id_and_on_files(trained, tmp_path):
    root, env, proc, client, run = trained
    out = _run([_cli("dlm-evaluate"), f"paths.root_dir={root}", f"run_id={run.info.run_id}", "evaluation.n_boot=200",
                "logger.experiment_name=e2e"], cwd=root, env=env)
    # named by the run's model option (tag dlm_ml.model); predictions from files by model_name=
    assert "reader R1" in out.stdout and "small_cnn @ R1 specificity" in out.stdout
    pred_path = client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp_path))
    out2 = _run([_cli("dlm-evaluate"), f"paths.root_dir={root}", f"predictions={pred_path}",
                 f"cohort_dir={run.data.params['data.cohort_dir']}", "evaluation.n_boot=200",
                 "model_name=small_cnn", "logger.experiment_name=e2e"], cwd=root, env=env)
    model_line = [line.split() for line in out2.stdout.splitlines() if line.startswith("small_cnn ")][0]
    # same numbers from the run and from the files (column widths follow the longest row label)
    assert model_line in [line.split() for line in out.stdout.splitlines()]
