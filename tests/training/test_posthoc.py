"""Post-hoc calibration of a cross-validation result: fitted on validation lesions only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.cohort import schema
from dlm_ml.models.calibration import PostHocCalibration
from dlm_ml.training.cross_validation import CrossValidationResult, FoldResult
from dlm_ml.training.posthoc import calibrate_folds


def _table(fold, n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    pcr = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.5 * z + shift)))).astype(int)
    return pd.DataFrame({"patient_id": [f"F{fold}P{i}" for i in range(n)], "lesion_id": "L1", "fold": fold,
                         "prob_pcr": 1 / (1 + np.exp(-z)), "pcr": pcr})


def _result():
    return CrossValidationResult([FoldResult(f, _table(f, 60, 10 + f), _table(f, 80, 20 + f)) for f in range(3)])


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_fitted_on_validation_lesions_only(method):
    result = _result()
    calibrated, params = calibrate_folds(result, PostHocCalibration(method))
    # The test lesions' outcomes play no part: change them all and nothing calibrated moves.
    flipped = CrossValidationResult([FoldResult(f.fold, f.test.assign(pcr=1 - f.test.pcr), f.validation)
                                     for f in result.folds])
    again, params_again = calibrate_folds(flipped, PostHocCalibration(method))
    for a, b in zip(calibrated.folds, again.folds):
        assert np.array_equal(a.test.prob_pcr, b.test.prob_pcr)
    pd.testing.assert_frame_equal(params, params_again)
    # ... and each fold's map is the one fitted on that fold's validation lesions.
    for f, row in zip(result.folds, params.itertuples()):
        fitted = PostHocCalibration(method).fit(f.validation.prob_pcr, f.validation.pcr)
        out = calibrated.folds[f.fold]
        assert np.allclose(out.test.prob_pcr, fitted.apply(f.test.prob_pcr))
        assert np.array_equal(out.test[schema.UNCALIBRATED_PROB], f.test.prob_pcr)
        assert row.fold == f.fold and row.n_lesions == len(f.validation)


def test_none_leaves_the_result_untouched():
    result = _result()
    same, params = calibrate_folds(result, PostHocCalibration("none"))
    assert same is result and params.empty


def test_prediction_columns_order_kept():
    calibrated, _ = calibrate_folds(_result(), PostHocCalibration("platt"))
    assert list(calibrated.predictions.columns) == ["patient_id", "lesion_id", "fold", "prob_pcr",
                                                    schema.UNCALIBRATED_PROB, "pcr"]
