"""The fold ensemble as a standard MLflow model: logged into a real store, loaded with
``mlflow.pyfunc.load_model("runs:/RUN/model")``, predicting what the ensemble predicts; registered."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.tracking.ensemble_model import REGISTERED_TAG, download_fold_ensemble, log_fold_ensemble, trained_run
from tests.models.test_ensemble import _ensemble, _inputs


@pytest.fixture
def logged(tmp_path, tracker):
    folder, _ = _ensemble(tmp_path)
    client = tracker.client
    run_id = client.create_run(tracker.experiment_id, tags={"dlm_ml.role": "train"}).info.run_id
    registered = log_fold_ensemble(client, run_id, folder, "dlm_ml-test-ensemble")
    client.set_terminated(run_id)
    return folder, client, run_id, registered, tracker


def test_the_pyfunc_predicts_what_the_ensemble_predicts(logged, monkeypatch):
    folder, client, run_id, registered, tracker = logged
    # What `runs:/` URIs resolve against. The variable alone is not enough: a Lightning MLflow logger
    # earlier in the same process sets the process-wide URI, which takes precedence over it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracker.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(previous)
    image, present, covariates = _inputs()
    numeric = covariates[["age", "cea"]].to_numpy(float)
    categorical = covariates[["sex"]].fillna("").to_numpy(str)
    out = model.predict({"image": image, "present": present, "covariates_numeric": numeric,
                         "covariates_categorical": categorical})
    expected = FoldEnsemble.load(folder).predict(image, present, covariates)
    np.testing.assert_array_equal(out["prob_pcr"].to_numpy(), expected.prob_pcr)
    assert list(out.columns) == ["prob_pcr", "prob_pcr_uncalibrated", "prob_pcr_sd", "prob_pcr_fold_0",
                                 "prob_pcr_fold_1", "prob_pcr_fold_2"]
    tta = model.predict({"image": image, "present": present, "covariates_numeric": numeric,
                         "covariates_categorical": categorical}, params={"flip_tta": True})
    np.testing.assert_array_equal(tta["prob_pcr"].to_numpy(),
                                  FoldEnsemble.load(folder).predict(image, present, covariates, flip_tta=True).prob_pcr)
    # the signature states the tensors
    inputs = {spec.name: spec for spec in model.metadata.get_input_schema().inputs}
    assert inputs["image"].shape == (-1, 4, 8, 8, 8) and inputs["present"].shape == (-1, 4)
    with pytest.raises(Exception, match="present"):
        model.predict({"image": image, "covariates_numeric": numeric, "covariates_categorical": categorical})


def test_registered_and_downloadable(logged):
    folder, client, run_id, registered, _ = logged
    assert registered.startswith("dlm_ml-test-ensemble/")
    assert client.get_run(run_id).data.tags[REGISTERED_TAG] == registered
    versions = client.search_model_versions("name = 'dlm_ml-test-ensemble'")
    assert run_id in {v.run_id for v in versions}
    fetched = download_fold_ensemble(client, run_id, folder.parent / "fetched")
    assert FoldEnsemble.load(fetched).folds == [0, 1, 2]


def test_only_a_finished_training_run_with_a_model_predicts(logged, tracker):
    _, client, run_id, _, _ = logged
    other = client.create_run(tracker.experiment_id, tags={"dlm_ml.role": "evaluate"}).info.run_id
    with pytest.raises(ValueError, match="not a dlm-train run"):
        trained_run(client, other)
    running = client.create_run(tracker.experiment_id, tags={"dlm_ml.role": "train"}).info.run_id
    with pytest.raises(ValueError, match="RUNNING"):
        trained_run(client, running)
    client.set_terminated(running)
    with pytest.raises(ValueError, match="has no fold ensemble"):
        trained_run(client, running)
