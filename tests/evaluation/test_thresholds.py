"""Reader-matched thresholds: chosen only on the lesions given, applied per fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.evaluation.thresholds import apply_thresholds, reader_matched_thresholds


def _lesions(n, prefix, rng):
    pcr = np.tile([0, 1], n // 2)
    return pd.DataFrame({"patient_id": [f"{prefix}{i // 2}" for i in range(n)],
                         "lesion_id": [f"L{i % 2}" for i in range(n)], "pcr": pcr}), rng.random(n)


def _readings(lesions, calls, reader="R1"):
    return lesions[["patient_id", "lesion_id"]].assign(reader_id=reader, score=3, call=calls)


def test_uses_only_the_lesions_it_is_given():
    rng = np.random.default_rng(0)
    val, val_prob = _lesions(20, "V", rng)
    test, _ = _lesions(40, "T", rng)
    val_calls = (rng.random(20) < 0.3).astype(int)
    expected_spec = float((val_calls[val.pcr.to_numpy() == 0] == 0).mean())
    results = []
    for test_calls in (np.zeros(40, int), np.ones(40, int)):  # opposite readings of the other lesions
        readings = pd.concat([_readings(val, val_calls), _readings(test, test_calls)], ignore_index=True)
        results.append(reader_matched_thresholds(val, val_prob, readings, fold=2))
    a, b = results
    pd.testing.assert_frame_equal(a, b)
    row = a.iloc[0]
    assert row.fold == 2 and row.reader_id == "R1" and row.n_val_lesions == 20
    assert row.reader_specificity_val == pytest.approx(expected_spec)
    model_spec = float((val_prob[val.pcr.to_numpy() == 0] < row.threshold).mean())
    assert model_spec >= expected_spec


def test_one_class_among_validation_lesions_gives_no_threshold():
    rng = np.random.default_rng(1)
    val, prob = _lesions(10, "V", rng)
    val = val.assign(pcr=0)
    out = reader_matched_thresholds(val, prob, _readings(val, np.zeros(10, int)), fold=0)
    assert np.isnan(out.threshold.iloc[0]) and out.n_val_lesions.iloc[0] == 10


def test_each_fold_gets_its_own_threshold():
    predictions = pd.DataFrame({"fold": [0, 0, 1, 1, 2], "prob_pcr": [0.5, 0.7, 0.5, 0.7, 0.99]})
    thresholds = pd.DataFrame({"fold": [0, 1, 2, 0, 1, 2], "reader_id": ["R1"] * 3 + ["R2"] * 3,
                               "threshold": [0.4, 0.6, np.inf, 0.9, 0.9, 0.9]})
    assert apply_thresholds(predictions, thresholds, "R1").tolist() == [1, 1, 0, 1, 0]
    assert apply_thresholds(predictions, thresholds, "R2").tolist() == [0, 0, 0, 0, 1]


def test_missing_fold_names_reader_and_fold():
    predictions = pd.DataFrame({"fold": [0, 3], "prob_pcr": [0.5, 0.5]})
    thresholds = pd.DataFrame({"fold": [0], "reader_id": ["R1"], "threshold": [0.4]})
    with pytest.raises(ValueError, match=r"reader R1 in fold\(s\) \[3\]"):
        apply_thresholds(predictions, thresholds, "R1")
