"""The fold loop of tabular models: the networks' split, and nothing of a test fold ever fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dlm_ml.data.datamodule import PCRDataModule
from dlm_ml.data.folds import fold_rows, make_folds
from dlm_ml.data.patches import PatchSet
from dlm_ml.models.baselines import tuning
from dlm_ml.training.recorder import PREDICTIONS_FILE, MemoryFoldRecorder
from dlm_ml.training.tabular import cross_validate_tabular
from tests.models.baselines.conftest import lesion_feature_frame

RADIOMICS = {"_target_": "dlm_ml.models.baselines.radiomics.RadiomicsLogistic", "column_pattern": "__",
             "k_grid": [2, 5], "c_grid": [0.1, 1.0], "inner_folds": 3, "seed": 0}


def _cfg(estimator: dict):
    return OmegaConf.create({"data": {"datamodule": {"val_fraction": 0.2, "seed": 7}},
                             "model": {"estimator": estimator}})


def _inputs(n_patients=45):
    features = lesion_feature_frame(n_patients=n_patients, seed=2)
    lesions = features[["patient_id", "lesion_id", "pcr"]]
    return lesions, features, make_folds(lesions, 3, 5)


def test_same_split_as_the_networks_data_module():
    """One function splits for both; this pins that the data module still takes it."""
    lesions, _, folds = _inputs()
    patches = PatchSet(np.zeros((len(lesions), 1, 2, 2, 2), np.float32), np.ones((len(lesions), 1), bool),
                       lesions, ["baseline/ct"], 1.0, "key")
    for fold in range(3):
        dm = PCRDataModule(patches, folds, fold, val_fraction=0.2, seed=7)
        fit, val, test = fold_rows(lesions, folds, fold, 0.2, 7)
        assert np.array_equal(fit, dm.fit_rows) and np.array_equal(val, dm.val_rows)
        assert np.array_equal(test, dm.test_rows)


def test_selection_and_tuning_never_see_validation_or_test_lesions(monkeypatch, tmp_path):
    """Every fit of every pipeline step (inner folds and the refit) starts at ColumnsMatching.fit:
    the patients it sees must all be fit patients of the fold."""
    seen: list[set] = []
    original = tuning.ColumnsMatching.fit

    def recording_fit(self, X, y=None):
        seen.append(set(X.patient_id))
        return original(self, X, y)

    monkeypatch.setattr(tuning.ColumnsMatching, "fit", recording_fit)
    lesions, features, folds = _inputs()
    recorder = MemoryFoldRecorder()
    result = cross_validate_tabular(_cfg(RADIOMICS), lesions, features, folds, recorder, tmp_path)
    assert len(result.predictions) == len(lesions)
    calls_per_fold = len(seen) // 3
    for fold in range(3):
        fit, _, _ = fold_rows(lesions, folds, fold, 0.2, 7)
        fit_patients = set(lesions.patient_id.iloc[fit])
        fold_calls = seen[fold * calls_per_fold:(fold + 1) * calls_per_fold]
        assert fold_calls, "no pipeline fit recorded"
        for patients in fold_calls:
            assert patients <= fit_patients, f"fold {fold}: fitted on {sorted(patients - fit_patients)[:5]}"
        # the refit sees every fit patient; inner fits see a part of them
        assert fold_calls[-1] == fit_patients and any(p < fit_patients for p in fold_calls[:-1])
    assert (tmp_path / "fold_0" / "model_summary.json").is_file()
    assert set(recorder.runs[0].tables[PREDICTIONS_FILE].patient_id) == set(folds.patient_id[folds.fold == 0])


def test_rule_model_through_the_loop_is_deterministic(tmp_path):
    lesions, features, folds = _inputs()
    cfg = _cfg({"_target_": "dlm_ml.models.baselines.rules.RuleModel", "column": "shrinkage"})
    a = cross_validate_tabular(cfg, lesions, features, folds, MemoryFoldRecorder(), tmp_path / "a").predictions
    b = cross_validate_tabular(cfg, lesions, features, folds, MemoryFoldRecorder(), tmp_path / "b").predictions
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["patient_id", "lesion_id", "fold", "prob_pcr", "pcr"]


def test_misaligned_features_refused(tmp_path):
    lesions, features, folds = _inputs()
    with pytest.raises(ValueError, match="not row-aligned"):
        cross_validate_tabular(_cfg(RADIOMICS), lesions, features.iloc[::-1], folds, MemoryFoldRecorder(), tmp_path)
    with pytest.raises(ValueError, match=r"\(\d+ rows\) are not row-aligned"):
        cross_validate_tabular(_cfg(RADIOMICS), lesions, features.iloc[1:], folds, MemoryFoldRecorder(), tmp_path)
