"""Radiomics baseline: selection and tuning inside the fit lesions."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_ml.models.baselines.radiomics import RadiomicsLogistic
from dlm_ml.models.baselines.tuning import CorrelationFilter, TopUnivariate, inner_folds
from dlm_ml.stats import roc_auc
from tests.models.baselines.conftest import lesion_feature_frame


def test_selects_the_informative_features_and_predicts(lesion_frame):
    model = RadiomicsLogistic("__", k_grid=(2, 5), c_grid=(0.1, 1.0), seed=0)
    model.fit(lesion_frame, lesion_frame.pcr, lesion_frame.patient_id)
    selected = model.selected_features()
    assert "delta_ct_roi__signal" in selected and "presurgery_adc_roi__mean" in selected
    test = lesion_feature_frame(n_patients=80, seed=11)
    assert roc_auc(test.pcr.to_numpy(), model.predict_proba(test)) > 0.7
    summary = model.summary()
    assert summary["n_candidate_features"] == 33 and len(summary["grid"]) == 4
    assert set(summary["coefficients"]) == set(selected)


def test_clinical_columns_are_not_radiomics(lesion_frame):
    model = RadiomicsLogistic("__")
    assert all("__" in c for c in model.feature_columns(lesion_frame))
    with pytest.raises(ValueError, match="no lesion feature column matches"):
        RadiomicsLogistic("^nothing$").fit(lesion_frame, lesion_frame.pcr, lesion_frame.patient_id)


def test_missing_images_and_empty_columns_do_not_drop_lesions(lesion_frame):
    frame = lesion_frame.copy()
    frame.loc[::3, "presurgery_adc_roi__mean"] = np.nan
    frame["baseline_ct_ring__empty"] = np.nan
    model = RadiomicsLogistic("__", k_grid=(3,), c_grid=(1.0,)).fit(frame, frame.pcr, frame.patient_id)
    prob = model.predict_proba(frame)
    assert len(prob) == len(frame) and np.isfinite(prob).all()


def test_correlation_filter_keeps_the_stronger_of_a_pair():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    strong = y + 0.3 * rng.normal(size=100)
    X = np.column_stack([strong + 0.01 * rng.normal(size=100), strong, rng.normal(size=100)])
    kept = CorrelationFilter(0.9).fit(X, y).kept_
    assert len(kept) == 2 and 2 in kept


def test_top_univariate_caps_k_at_the_columns():
    X = np.random.default_rng(1).normal(size=(20, 3))
    assert len(TopUnivariate(k=10).fit(X, np.repeat([0, 1], 10)).kept_) == 3


def test_inner_folds_refuse_too_few_patients_per_class():
    with pytest.raises(ValueError, match="1 with pCR"):
        inner_folds(np.array(["a", "b", "c", "d"]), np.array([0, 0, 0, 1]), 5, 0)


def test_too_few_patients_to_tune_uses_the_grid_middle_and_says_so(lesion_frame):
    small = lesion_frame[lesion_frame.patient_id.isin(sorted(lesion_frame.patient_id.unique())[:6])].copy()
    small["pcr"] = 0
    first_pcr = small.index[0]
    small.loc[first_pcr, "pcr"] = 1  # one patient with pCR: no inner fold can score a setting
    model = RadiomicsLogistic("__", k_grid=(2, 5, 9), c_grid=(0.1, 1.0, 10.0)).fit(small, small.pcr, small.patient_id)
    summary = model.summary()
    assert summary["tuned"] is False and "1 with pCR" in summary["reason"]
    assert summary["params"] == {"select__k": 5, "logistic__C": 1.0}
    assert len(model.predict_proba(small)) == len(small)
