"""The baselines through the real dlm-train command: same folds as any model, the same tables,
named in the report and tracked; post-hoc calibration and a site-held-out design end to end."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.cli.test_train_evaluate import _cli, _run

pytestmark = pytest.mark.slow  # trains through the real command

TINY = ["data.synthetic.preset=tiny", "data.synthetic.n_patients=24", "data.n_folds=3", "evaluation.n_boot=100",
        "data.preprocess_workers=1", "logger.experiment_name=baselines"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    return root, {"DLM_ML_CACHE": str(root / "cache_home")}


def _train(root, env, *overrides):
    _run([_cli("dlm-train"), f"paths.root_dir={root}", *overrides], cwd=root, env=env)
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name(next(o.split("=")[1] for o in overrides
                                                     if o.startswith("logger.experiment_name=")))
    run = client.search_runs([experiment.experiment_id], "tags.`dlm_ml.role` = 'train'",
                             order_by=["attributes.start_time DESC"])[0]
    return client, run


def _artifact(client, run, name) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run.info.run_id, name), dtype={"patient_id": str, "lesion_id": str})


@pytest.mark.parametrize("model", ["clinical_logistic", "rule_disappeared", "rule_shrinkage", "rule_adc_change",
                                   "radiomics"])
def test_each_baseline_trains_in_the_same_folds_and_is_named(tiny_root, model):
    root, env = tiny_root
    extra = ["data.radiomics.families=[statistics]", "model.estimator.k_grid=[2,4]",
             "model.estimator.c_grid=[0.1,1.0]"] if model == "radiomics" else []
    client, run = _train(root, env, f"model={model}", *TINY, *extra)
    assert run.data.tags["dlm_ml.model"] == model
    predictions = _artifact(client, run, "predictions.csv")
    cohort_lesions = pd.read_csv(root / "outputs/data/synthetic_tiny_n24_seed42/outcomes.csv", dtype=str)
    assert len(predictions) == len(cohort_lesions) and predictions.prob_pcr.between(0, 1).all()
    # the same patient-grouped folds as every other model of the same seed
    folds = _artifact(client, run, "folds.csv")
    if (root / "folds_reference.csv").exists():
        pd.testing.assert_frame_equal(folds, pd.read_csv(root / "folds_reference.csv", dtype={"patient_id": str}))
    else:
        folds.to_csv(root / "folds_reference.csv", index=False)
    report = open(client.download_artifacts(run.info.run_id, "evaluation/report.md")).read()
    assert f"pCR evaluation report: {model} vs readers" in report
    summaries = client.list_artifacts(run.info.run_id)
    assert {"predictions.csv", "thresholds.csv", "evaluation"} <= {a.path for a in summaries}


def test_platt_calibration_and_leave_one_site_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    env = {"DLM_ML_CACHE": str(root / "cache_home")}
    client, run = _train(root, env, "model=rule_shrinkage", "calibration=platt", "data/validation=leave_one_site_out",
                         "data.synthetic.preset=easy", "data.synthetic.n_patients=36", "evaluation.n_boot=100",
                         "logger.experiment_name=calibrated")
    predictions = _artifact(client, run, "predictions.csv")
    patients = pd.read_csv(root / "outputs/data/synthetic_easy_n36_seed42/patients.csv", dtype=str)
    site = predictions.patient_id.map(dict(zip(patients.patient_id, patients.site)))
    # one test fold per site, named by it; no site in two folds
    assert (predictions.groupby("fold").fold_label.nunique() == 1).all()
    assert (site.groupby(predictions.fold).nunique() == 1).all()
    assert set(predictions.fold_label) == {f"site {s}" for s in patients.site.unique()}
    calibration = _artifact(client, run, "calibration.csv")
    assert sorted(calibration.fold) == sorted(predictions.fold.unique()) and (calibration.slope > 0).all()
    assert "prob_pcr_uncalibrated" in predictions.columns
    report = open(client.download_artifacts(run.info.run_id, "evaluation/report.md")).read()
    assert "before recalibration" in report and "leave-one-site-out" in report
