"""Folds as jobs: ``dlm-train -m data.fold=0,1,2`` through submitit's local executor, then
``finalise=true``, equals one single-process ``dlm-train`` of the same configuration; finalise
refuses, naming the fold, while a fold is missing."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient

from dlm_ml.tracking.train_runs import PARENT_RUN_FILE
from tests.cli.test_reproducibility import PY, _args, _predictions, _train, _train_runs, _uri, make_workspace

pytestmark = pytest.mark.slow  # trains through the real command

EXPERIMENT = "fold_jobs"
EXTRA = [f"logger.experiment_name={EXPERIMENT}", "trainer.max_epochs=3"]


def _children(client, run):
    return {c.data.tags["fold"]: c for c in client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory, "fold_jobs")


def test_fold_jobs_then_finalise_equal_single_process_run(workspace, tmp_path):
    root, cohort, env = workspace
    jobs_dir = root / "jobs"
    sweep = subprocess.run(
        [PY, "-m", "dlm_ml.train", "-m", *_args(root, cohort, *EXTRA, "data.fold=0,2", "hydra/launcher=local_jobs",
                                                f"paths.fold_jobs_dir={jobs_dir}")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-5000:]
    client = MlflowClient(_uri(root))
    (parent,) = _train_runs(client, EXPERIMENT)  # the jobs agreed on one parent run
    assert parent.info.status == "RUNNING"  # no fold job marks it finished
    assert sorted(_children(client, parent)) == ["0", "2"]
    assert "data.fold" not in parent.info.run_name and parent.data.params["data.fold"] == "None"

    # fold 1 never ran: finalise refuses, naming it, and leaves the parent as it was
    refused = _train(root, cohort, env, *EXTRA, "finalise=true", f"paths.fold_jobs_dir={jobs_dir}", check=False)
    assert refused.returncode != 0
    assert "fold 1: no run" in refused.stderr and "fold 0:" not in refused.stderr and "fold 2:" not in refused.stderr
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"

    # the missing fold as a job started on its own, sharing the folder, then finalise
    _train(root, cohort, env, *EXTRA, "data.fold=1", f"paths.fold_jobs_dir={jobs_dir}")
    (folder,) = jobs_dir.iterdir()
    assert (folder / PARENT_RUN_FILE).read_text().strip() == parent.info.run_id
    _train(root, cohort, env, *EXTRA, "finalise=true", f"paths.fold_jobs_dir={jobs_dir}")
    finalised = client.get_run(parent.info.run_id)
    assert finalised.info.status == "FINISHED" and "model_auc" in finalised.data.metrics
    assert {"predictions.csv", "thresholds.csv", "evaluation"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}
    assert sorted(_children(client, finalised)) == ["0", "1", "2"]
    assert all(c.info.status == "FINISHED" for c in _children(client, finalised).values())

    _train(root, cohort, env, *EXTRA)
    single = _train_runs(client, EXPERIMENT)[-1]
    assert single.info.run_id != parent.info.run_id
    assert single.data.tags["dlm_ml.config_sha256"] == finalised.data.tags["dlm_ml.config_sha256"]
    a = _predictions(client, single.info.run_id, tmp_path / "single")
    b = _predictions(client, parent.info.run_id, tmp_path / "jobs")
    assert len(b) == len(b.drop_duplicates(["patient_id", "lesion_id"]))  # every lesion exactly once
    merged = a.merge(b, on=["patient_id", "lesion_id"])
    assert len(merged) == len(a) == len(b)
    assert (merged.fold_x == merged.fold_y).all()
    assert (merged.prob_pcr_x == merged.prob_pcr_y).all()  # bit for bit on CPU
    assert finalised.data.metrics["model_auc"] == single.data.metrics["model_auc"]
