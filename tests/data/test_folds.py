"""No patient in two folds; stratification; determinism; validation split inside training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.folds import FoldLeakageError, check_no_leakage, make_folds, split_validation


def _lesions(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(rng.integers(1, 6)):
            rows.append({"patient_id": f"P{p:03d}", "lesion_id": f"L{k + 1}", "pcr": int(rng.random() < 0.35)})
    return pd.DataFrame(rows)


def test_patients_never_in_two_folds_and_all_assigned():
    lesions = _lesions()
    folds = make_folds(lesions, 5, seed=1)
    assert folds.patient_id.is_unique
    assert set(folds.patient_id) == set(lesions.patient_id)
    joined = lesions.merge(folds, on="patient_id")
    assert joined.groupby("patient_id").fold.nunique().max() == 1
    # label-stratified: every fold's pCR rate within 0.15 of the overall rate
    rates = joined.groupby("fold").pcr.mean()
    assert (rates - lesions.pcr.mean()).abs().max() < 0.15


def test_folds_deterministic_and_order_independent():
    lesions = _lesions()
    a = make_folds(lesions, 5, seed=3)
    b = make_folds(lesions.sample(frac=1, random_state=0), 5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = make_folds(lesions, 5, seed=4)
    assert not a.equals(c)


def test_leakage_detected():
    folds = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "fold": [0, 1, 1]})
    with pytest.raises(FoldLeakageError, match="P1"):
        check_no_leakage(folds)


def test_validation_split_is_patient_grouped():
    lesions = _lesions(40)
    fit, val = split_validation(lesions, 0.2, seed=0)
    assert not set(lesions.patient_id[fit]) & set(lesions.patient_id[val])
    assert 0.1 < val.mean() < 0.35


def test_too_few_patients():
    with pytest.raises(ValueError, match="cannot be split"):
        make_folds(_lesions(3), 5, seed=0)
