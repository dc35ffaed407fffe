"""Every bootstrap interval of the report resamples patients, never lesions.

The guarantee, tested without looking at the implementation: copying every lesion of every
patient k times (same outcome, prediction and readings) leaves the patient-resampled
distribution unchanged — the same patients are drawn, each with k times its lesions, and AUC,
ROC curve and proportions are ratios that a uniform copy does not change. A bootstrap that
resampled lesions would draw from 3x as many units and give other (narrower) intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml import stats
from dlm_ml.evaluation.sections import compute_sections
from dlm_ml.utils.jsonable import to_jsonable
from tests.evaluation.helpers import counts_for, make_tables, settings

COPIES = 3


def _copied(pred: pd.DataFrame, readings: pd.DataFrame, k: int):
    def copy(frame):
        return pd.concat([frame.assign(lesion_id=frame.lesion_id + f"_{i}") for i in range(k)], ignore_index=True)
    return copy(pred), copy(readings)


@pytest.fixture(scope="module")
def both():
    pred, readings, thresholds = make_tables(n_patients=30, seed=11)
    big_pred, big_readings = _copied(pred, readings, COPIES)
    run = settings(n_boot=150, seed=5)
    one = to_jsonable(compute_sections(pred, readings, thresholds, counts_for(pred, readings), run))
    many = to_jsonable(compute_sections(big_pred, big_readings, thresholds, counts_for(big_pred, big_readings), run))
    return one, many


def _ci(result: dict) -> tuple:
    assert result["available"], result
    return result["ci_low"], result["ci_high"]


def test_auc_intervals_resample_patients(both):
    one, many = both
    for a, b in zip(one["discrimination"], many["discrimination"]):
        assert b["n_lesions"] == COPIES * a["n_lesions"] and b["n_patients"] == a["n_patients"]
        assert _ci(b["bootstrap"]) == pytest.approx(_ci(a["bootstrap"]), rel=1e-9), a["method"]


def test_roc_band_resamples_patients(both):
    one, many = both
    assert one["roc_band"]["available"] and many["roc_band"]["available"]
    for side in ("tpr_low", "tpr_high"):
        np.testing.assert_allclose(many["roc_band"][side], one["roc_band"][side], rtol=1e-9, atol=1e-12)


def test_proportion_intervals_resample_patients(both):
    one, many = both
    checked = 0
    for a, b in zip(one["operating_points"], many["operating_points"]):
        for strategy in ("reader_calls", "model_matched"):
            for metric in ("sensitivity", "specificity", "ppv", "npv"):
                key = f"{metric}_bootstrap"
                assert _ci(b[strategy][key]) == pytest.approx(_ci(a[strategy][key]), rel=1e-9), (strategy, metric)
                checked += 1
    assert checked == 3 * 2 * 4


def test_patient_level_intervals_resample_patients(both):
    """min/max aggregation is unchanged by copies, so the patient-level table must be too."""
    one, many = both
    rows = {m["method"]: m for m in one["patient_level"]["methods"]}
    compared = 0
    for b in many["patient_level"]["methods"]:
        if b["method"].startswith(("model (min)", "model (max)", "reader")):
            assert _ci(b["bootstrap"]) == pytest.approx(_ci(rows[b["method"]]["bootstrap"]), rel=1e-9), b["method"]
            compared += 1
    assert compared == 2 + 3 * 2


def test_copies_would_narrow_a_lesion_bootstrap(both):
    """The data can tell the two units apart: the lesion-resampled interval of the copied data
    is narrower than the patient-resampled one (so the tests above can fail)."""
    pred, _, _ = make_tables(n_patients=30, seed=11)
    big, _ = _copied(pred, pred.assign(reader_id="x", score=1, call=1), COPIES)
    patients = stats.cluster_bootstrap_auc(big.pcr, big.prob_pcr, big.patient_id, n_boot=150, seed=5)
    lesions = stats.cluster_bootstrap_auc(big.pcr, big.prob_pcr, np.arange(len(big)), n_boot=150, seed=5)
    assert (lesions.ci_high - lesions.ci_low) < 0.8 * (patients.ci_high - patients.ci_low)
