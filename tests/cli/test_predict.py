"""External validation end to end: a real dlm-train run (shared-encoder network, clinical covariates,
Platt calibration), then the real dlm-predict on the training cohort (one fold's model reproduces
that fold's out-of-fold probabilities), on a second synthetic cohort of another seed and site
(every lesion predicted, evaluated against its readers, saliency maps in patch geometry), on the same
cohort without outcomes or readings, and refusing a changed preprocessing; the run's MLflow model
predicts what dlm-predict does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from mlflow.tracking import MlflowClient

from dlm_ml.cli.predict_inputs import prediction_cohort, run_patches
from dlm_ml.data.patches import patch_grid
from dlm_ml.data.synthetic import generate_cohort, make_config
from dlm_ml.models.cohort_prediction import ensemble_covariates
from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.tracking.ensemble_model import download_fold_ensemble, trained_run
from tests.cli.test_train_evaluate import _cli, _run

pytestmark = pytest.mark.slow  # trains through the real command

TRAIN = ["model=longitudinal", "data/covariates=clinical", "calibration=platt", "data.synthetic.preset=easy",
         "data.synthetic.n_patients=40", "data.n_folds=3", "trainer.max_epochs=6", "data.patches.patch_size_mm=32",
         "evaluation.n_boot=100", "data.preprocess_workers=1", "logger.experiment_name=predict"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    env = {"DLM_ML_CACHE": str(root / "cache_home")}
    _run([_cli("dlm-train"), f"paths.root_dir={root}", *TRAIN], cwd=root, env=env)
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow/mlflow.db")
    experiment = client.get_experiment_by_name("predict")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`dlm_ml.role` = 'train'")
    # a second cohort: another seed, one site the training cohort never had
    external = root / "external"
    generate_cohort(external, make_config("easy", seed=7, n_patients=12, **{
        "clinical.sites": ["S9"], "clinical.site_weights": [1.0], "clinical.site_ct_noise_hu": [14.0],
        "clinical.site_adc_scale": [1.03]}))
    return root, env, client, run, external


def _predict(root, env, run, *args, check=True):
    cmd = [_cli("dlm-predict"), f"paths.root_dir={root}", f"run_id={run.info.run_id}", "logger.experiment_name=predict",
           "data.preprocess_workers=1", "evaluation.n_boot=100", *args]
    if check:
        return _run(cmd, cwd=root, env=env)
    return subprocess.run(cmd, cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def _output(proc) -> str:
    """The predictions.csv path dlm-predict printed."""
    line = next(x for x in proc.stdout.splitlines() if "predictions.csv" in x and "lesions predicted" in x)
    return line.split(": ", 1)[1].split(" (MLflow run")[0]


def test_one_folds_model_reproduces_its_out_of_fold_probabilities(trained):
    root, env, client, run, _ = trained
    cohort_dir = run.data.tags["cohort_dir"]
    oof = pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv", str(root)),
                      dtype={"patient_id": str, "lesion_id": str})
    for fold in (0, 2):
        proc = _predict(root, env, run, f"data.cohort_dir={cohort_dir}", f"folds=[{fold}]", "evaluate=false")
        predicted = pd.read_csv(_output(proc), dtype={"patient_id": str, "lesion_id": str, "folds": str})
        assert len(predicted) == len(oof)  # every lesion of the cohort has a row
        mine = oof[oof.fold == fold].merge(predicted, on=["patient_id", "lesion_id"], suffixes=("_oof", ""))
        assert len(mine) == (oof.fold == fold).sum() and (mine.folds == str(fold)).all()
        np.testing.assert_allclose(mine.prob_pcr.to_numpy(), mine.prob_pcr_oof.to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(mine.prob_pcr_uncalibrated.to_numpy(),
                                   mine.prob_pcr_uncalibrated_oof.to_numpy(), rtol=0, atol=1e-6)


def test_the_ensemble_predicts_and_evaluates_a_new_site_and_the_mlflow_model_agrees(trained, monkeypatch):
    root, env, client, run, external = trained
    proc = _predict(root, env, run, f"data.cohort_dir={external}", "explain=true", "saliency.max_lesions=2",
                    "saliency.methods=[occlusion]")
    predicted = pd.read_csv(_output(proc), dtype={"patient_id": str, "lesion_id": str})
    lesions = pd.read_csv(external / "lesions.csv", dtype=str)
    assert sorted(zip(predicted.patient_id, predicted.lesion_id)) == sorted(zip(lesions.patient_id, lesions.lesion_id))
    assert (predicted.folds == "0;1;2").all() and (predicted.n_folds == 3).all()
    folds = predicted[["prob_pcr_fold_0", "prob_pcr_fold_1", "prob_pcr_fold_2"]].to_numpy()
    np.testing.assert_allclose(predicted.prob_pcr, folds.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(predicted.prob_pcr_sd, folds.std(axis=1, ddof=1), rtol=0, atol=1e-12)
    # evaluated against the new cohort's readers, as an external evaluation of the run
    (evaluation,) = client.search_runs([run.info.experiment_id], f"tags.`dlm_ml.source_run` = '{run.info.run_id}' "
                                       "and tags.`dlm_ml.role` = 'evaluate'")
    assert "model_auc" in evaluation.data.metrics
    headers = [json.loads(p.read_text())["header"] for p in (root / "outputs").rglob("report.json")]
    assert any(h.get("external evaluation of run", "").startswith(run.info.run_id) for h in headers)
    # saliency: maps carry the patch's physical geometry
    maps = sorted((root / "outputs").rglob("occlusion_*.nii.gz"))
    assert maps and sorted((root / "outputs").rglob("montage.png"))
    first = predicted.iloc[0]
    centre = lesions.set_index(["patient_id", "lesion_id"]).loc[(first.patient_id, first.lesion_id)]
    grid = patch_grid(tuple(float(centre[c]) for c in ("x_mm", "y_mm", "z_mm")), 16, 2.0)
    written = sitk.ReadImage(str(next(p for p in maps if f"/{first.patient_id}/{first.lesion_id}/" in str(p))))
    assert written.GetSize() == grid.GetSize()
    np.testing.assert_allclose(written.GetOrigin(), grid.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), grid.GetSpacing(), atol=1e-6)
    # the standard MLflow model, loaded with nothing of dlm_ml but the package, predicts the same
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/outputs/mlflow/mlflow.db")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    _, run_cfg = trained_run(client, run.info.run_id)
    cohort = prediction_cohort(str(external))
    patches = run_patches(run_cfg, cohort, str(root / "outputs" / "cache"), 1)
    ensemble = FoldEnsemble.load(download_fold_ensemble(client, run.info.run_id, root / "fetched"))
    covariates = ensemble_covariates(ensemble, cohort, patches.lesions)
    config = ensemble.covariates
    out = model.predict({"image": patches.image, "present": patches.present,
                         "covariates_numeric": covariates[list(config.numeric)].to_numpy(float),
                         "covariates_categorical": covariates[list(config.categorical)].fillna("").to_numpy(str)})
    np.testing.assert_allclose(out.prob_pcr.to_numpy(), predicted.prob_pcr.to_numpy(), rtol=0, atol=1e-12)


def test_a_cohort_without_outcomes_or_readings_is_predicted_not_evaluated(trained, tmp_path):
    root, env, client, run, external = trained
    bare = tmp_path / "bare"
    shutil.copytree(external, bare)
    (bare / "outcomes.csv").unlink()
    (bare / "readings.csv").unlink()
    proc = _predict(root, env, run, f"data.cohort_dir={bare}", "flip_tta=true")
    predicted = pd.read_csv(_output(proc))
    assert len(predicted) == len(pd.read_csv(bare / "lesions.csv")) and predicted.pcr.isna().all()
    runs = client.search_runs([run.info.experiment_id], "tags.`dlm_ml.role` = 'predict' and "
                              f"tags.`cohort_dir` = '{bare.resolve()}'")
    assert len(runs) == 1 and runs[0].data.tags["dlm_ml.flip_tta"] == "True"


@pytest.mark.parametrize(("override", "key"), [("data.patches.patch_size_mm=40", "data.patches.patch_size_mm"),
                                               ("data.registration.enabled=false", "data.registration.enabled")])
def test_a_changed_preprocessing_is_refused_naming_the_key(trained, override, key):
    root, env, client, run, external = trained
    proc = _predict(root, env, run, f"data.cohort_dir={external}", override, check=False)
    assert proc.returncode != 0
    assert key in proc.stderr and "Traceback" not in proc.stderr
