"""The fold loop, run for real on a small patch set and recorded in a real MLflow store: each
fold's thresholds are chosen on its validation lesions only, and a resumed run rebuilds them."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.train import fold_thresholds
from dlm_ml.data.folds import make_folds
from dlm_ml.evaluation.thresholds import reader_matched_thresholds
from dlm_ml.tracking.client import PARENT_TAG, download_artifact
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.run import tracked_run
from dlm_ml.training.cross_validation import cross_validate
from dlm_ml.training.recorder import PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE

N_FOLDS = 3


@pytest.fixture(scope="module")
def cfg():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            f"data.n_folds={N_FOLDS}", "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2",
            "trainer=cpu", "trainer.max_epochs=2", "data.datamodule.batch_size=8"])


@pytest.fixture(scope="module")
def trained(cfg, patches, tracker, tmp_path_factory):
    folds = make_folds(patches.lesions, N_FOLDS, seed=0)
    out_dir = tmp_path_factory.mktemp("run")
    with tracked_run(tracker.client, tracker.experiment_id, run_name="thresholds") as parent_id:
        result = cross_validate(cfg, patches, folds, MlflowFoldRecorder(tracker, parent_id), out_dir)
    return parent_id, folds, out_dir, result


def test_validation_lesions_share_no_patient_with_the_test_fold(trained, patches):
    parent_id, folds, out_dir, result = trained
    fold_of = dict(zip(folds.patient_id, folds.fold))
    assert [f.fold for f in result.folds] == list(range(N_FOLDS))
    for f in result.folds:
        assert len(f.validation) and len(f.test)
        assert set(f.validation.patient_id).isdisjoint(f.test.patient_id)
        assert {fold_of[p] for p in f.test.patient_id} == {f.fold}
        assert f.fold not in {fold_of[p] for p in f.validation.patient_id}
        assert f.validation.pcr.nunique() == 2
    assert len(result.predictions) == len(patches)


def test_thresholds_are_those_of_the_logged_validation_predictions(trained, tracker, readings, tmp_path):
    parent_id, folds, out_dir, result = trained
    thresholds = fold_thresholds(result, readings)
    children = tracker.client.search_runs([tracker.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
    assert sorted(int(c.data.tags["fold"]) for c in children) == list(range(N_FOLDS))
    expected = []
    for child in sorted(children, key=lambda c: int(c.data.tags["fold"])):
        assert child.info.status == "FINISHED"
        fold = int(child.data.tags["fold"])
        logged = pd.read_csv(download_artifact(tracker.client, child.info.run_id, VALIDATION_PREDICTIONS_FILE,
                                               tmp_path / str(fold)), dtype={"patient_id": str, "lesion_id": str})
        expected.append(reader_matched_thresholds(logged[["patient_id", "lesion_id", "pcr"]],
                                                  logged.prob_pcr.to_numpy(), readings, fold))
    expected = pd.concat(expected, ignore_index=True)
    assert thresholds.threshold.notna().all()
    pd.testing.assert_frame_equal(thresholds, expected)
    n_val = {f.fold: len(f.validation) * readings.reader_id.nunique() for f in result.folds}
    assert thresholds.groupby("fold").n_val_lesions.sum().to_dict() == n_val


def test_resumed_run_reuses_finished_folds_at_full_precision(trained, cfg, patches, tracker, readings):
    parent_id, folds, out_dir, result = trained
    with tracked_run(tracker.client, tracker.experiment_id, run_id=parent_id):
        again = cross_validate(cfg, patches, folds, MlflowFoldRecorder(tracker, parent_id), out_dir)
    assert all(f.reused for f in again.folds)
    pd.testing.assert_frame_equal(again.predictions, result.predictions, check_exact=True)
    pd.testing.assert_frame_equal(fold_thresholds(again, readings), fold_thresholds(result, readings))
    stored = MlflowFoldRecorder(tracker, parent_id).finished_tables(0)
    assert set(stored) == {PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE}
