"""dlm-tune end to end: a parent run (role tune) with one child per outer fold holding its study,
the outer predictions evaluated against the readers; a search space that cannot be searched ends
the command cleanly, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.cli.test_train_evaluate import _run

pytestmark = pytest.mark.slow  # generates a cohort and runs the real command

#: Until the console script is installed the module runs as `python -m dlm_ml.cli.tune`.
TUNE = [sys.executable, "-m", "dlm_ml.cli.tune"]
TINY = ["data.synthetic.preset=tiny", "data.synthetic.n_patients=24", "data.n_folds=3", "evaluation.n_boot=100",
        "data.preprocess_workers=1", "logger.experiment_name=tune"]


def test_tune_records_parent_children_trials_and_the_outer_evaluation(tmp_path):
    env = {"DLM_ML_CACHE": str(tmp_path / "cache_home")}
    _run([*TUNE, f"paths.root_dir={tmp_path}", "model=clinical_logistic", "search=clinical_logistic",
          "search.n_trials=2", "search.inner_folds=2", "model.estimator.inner_folds=2", *TINY],
         cwd=tmp_path, env=env)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("tune")
    [parent] = client.search_runs([experiment.experiment_id], "tags.`dlm_ml.role` = 'tune'")
    assert parent.info.status == "FINISHED" and parent.data.tags["dlm_ml.model"] == "clinical_logistic"
    assert "model.estimator.c_grid" in parent.data.tags["dlm_ml.search_space"]
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["fold"]) for c in children) == [0, 1, 2]

    def table(run_id, name):
        return pd.read_csv(client.download_artifacts(run_id, name), dtype={"patient_id": str, "lesion_id": str})

    chosen = table(parent.info.run_id, "chosen_params.csv").set_index("fold")
    for child in children:
        fold = int(child.data.tags["fold"])
        assert child.info.status == "FINISHED" and child.data.tags["dlm_ml.tuned"] == "true"
        trials = table(child.info.run_id, "trials.csv")
        assert list(trials.trial) == [0, 1] and trials.inner_score.between(0, 1).all()
        assert len(client.get_metric_history(child.info.run_id, "trial_inner_score")) == 2
        c = float(child.data.params["model.estimator.c_grid"])
        assert c == pytest.approx(chosen.loc[fold, "model.estimator.c_grid"])
        assert chosen.loc[fold, "inner_score"] == pytest.approx(trials.inner_score.max())
        assert {"predictions_fold.csv", "validation_predictions_fold.csv"} <= {
            a.path for a in client.list_artifacts(child.info.run_id)}
    predictions = table(parent.info.run_id, "predictions.csv")
    outcomes = pd.read_csv(tmp_path / "outputs/data/synthetic_tiny_n24_seed42/outcomes.csv", dtype=str)
    assert len(predictions) == len(outcomes) and predictions.prob_pcr.between(0, 1).all()
    assert len(table(parent.info.run_id, "trials.csv")) == 6
    report = open(client.download_artifacts(parent.info.run_id, "evaluation/report.md")).read()
    assert "clinical_logistic vs readers" in report and "nested CV" in report
    assert "model_auc" in parent.data.metrics


def test_a_space_that_cannot_be_searched_ends_cleanly_naming_the_key(tmp_path):
    proc = subprocess.run([*TUNE, f"paths.root_dir={tmp_path}", "model=clinical_logistic", "search=custom",
                           "search.space={data.patches.spacing_mm: {type: float, low: 1, high: 2}}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "dlm-tune: search.space.data.patches.spacing_mm: only keys under" in proc.stderr
    assert "Traceback" not in proc.stderr
