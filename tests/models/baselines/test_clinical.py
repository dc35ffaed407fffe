"""Clinical-only logistic baseline."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_ml.data.covariates import CovariateConfig
from dlm_ml.models.baselines.clinical import ClinicalLogistic
from dlm_ml.stats import roc_auc
from tests.models.baselines.conftest import lesion_feature_frame

CLINICAL = CovariateConfig(numeric=("cea_baseline", "cea_presurgery", "age", "chemo_cycles", "diameter_mm"),
                           log_numeric=("cea_baseline", "cea_presurgery"), categorical=("sex", "chemo_regimen"))


def test_learns_the_clinical_signal_and_reports_what_it_chose(lesion_frame):
    model = ClinicalLogistic(CLINICAL, seed=1).fit(lesion_frame, lesion_frame.pcr, lesion_frame.patient_id)
    test = lesion_feature_frame(n_patients=80, seed=9)
    assert roc_auc(test.pcr.to_numpy(), model.predict_proba(test)) > 0.7
    summary = model.summary()
    assert summary["best_params"]["logistic__C"] in (0.01, 0.1, 1.0, 10.0)
    # CEA response is the signal: a lower presurgery CEA means pCR
    assert summary["coefficients"]["cea_presurgery"] < 0
    assert "sex=M" in summary["coefficients"] and "missing_age" in summary["coefficients"]


def test_same_seed_same_predictions_and_missing_values_imputed(lesion_frame):
    frame = lesion_frame.copy()
    frame.loc[::7, "age"] = np.nan
    frame.loc[::5, "sex"] = np.nan
    a = ClinicalLogistic(CLINICAL, seed=3).fit(frame, frame.pcr, frame.patient_id).predict_proba(frame)
    b = ClinicalLogistic(CLINICAL, seed=3).fit(frame, frame.pcr, frame.patient_id).predict_proba(frame)
    assert np.array_equal(a, b) and np.isfinite(a).all() and len(a) == len(frame)


def test_refuses_an_empty_config_and_bad_grid():
    with pytest.raises(ValueError, match="needs covariates"):
        ClinicalLogistic(CovariateConfig())
    with pytest.raises(ValueError, match="c_grid"):
        ClinicalLogistic(CLINICAL, c_grid=(0.0,))
