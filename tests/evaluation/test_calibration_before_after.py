"""Calibration before and after post-hoc recalibration: reported only when the predictions carry
prob_pcr_uncalibrated, each side equal to the statistics on its own column."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit

from dlm_ml import stats
from dlm_ml.data.cohort.schema import UNCALIBRATED_PROB
from dlm_ml.evaluation.evaluate import evaluate, read_predictions
from tests.evaluation.helpers import cohort_of, make_tables, settings


@pytest.fixture(scope="module")
def tables():
    pred, readings, thresholds = make_tables(n_patients=30, readers=("R1", "R2"))
    # an over-confident model before recalibration: the logit stretched by 2.5
    return pred.assign(**{UNCALIBRATED_PROB: expit(2.5 * logit(pred.prob_pcr.to_numpy()))}), readings, thresholds


def _evaluate(folder, pred, readings, thresholds):
    evaluate(pred, cohort_of(pred, readings), thresholds, folder, settings=settings(n_boot=20), header={})
    return json.loads((folder / "report.json").read_text())["calibration"], (folder / "report.md").read_text()


def test_before_and_after_equal_the_stats_on_each_column(tables, tmp_path):
    pred, readings, thresholds = tables
    cal, md = _evaluate(tmp_path, pred, readings, thresholds)
    truth = pred.pcr.to_numpy()
    for part, column in ((cal, "prob_pcr"), (cal["uncalibrated"], UNCALIBRATED_PROB)):
        prob = pred[column].to_numpy()
        fit = stats.calibration_intercept_slope(truth, prob)
        assert part["brier"] == pytest.approx(stats.brier_score(truth, prob), rel=1e-12)
        assert (part["recalibration"]["intercept"], part["recalibration"]["slope"]) == \
            pytest.approx((fit.intercept, fit.slope), rel=1e-9)
        rel = stats.reliability_curve(truth, prob, n_bins=settings().reliability_bins, strategy="quantile")
        assert [b["mean_predicted"] for b in part["reliability"]] == pytest.approx(rel.mean_predicted.tolist())
    assert cal["uncalibrated"]["recalibration"]["slope"] < 0.6 < cal["recalibration"]["slope"]
    assert f"before recalibration ({UNCALIBRATED_PROB})" in md and "after recalibration (prob_pcr)" in md
    assert "P(pCR) bin, before recalibration" in md


def test_absent_column_report_as_before(tables, tmp_path):
    pred, readings, thresholds = tables
    cal, md = _evaluate(tmp_path, pred.drop(columns=UNCALIBRATED_PROB), readings, thresholds)
    assert "uncalibrated" not in cal
    assert "recalibration (" not in md and "| Brier | Brier, prevalence only |" in md


def test_read_predictions_range_checks_the_column(tables, tmp_path):
    pred = tables[0].copy()
    pred.loc[3, UNCALIBRATED_PROB] = 1.5
    pred.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ValueError, match=rf"line 5 \(patient {pred.patient_id[3]}, lesion {pred.lesion_id[3]}\): "
                                         rf"{UNCALIBRATED_PROB} 1.5 outside \[0, 1\]"):
        read_predictions(tmp_path / "p.csv")
    pred.loc[3, UNCALIBRATED_PROB] = 0.5
    pred.to_csv(tmp_path / "q.csv", index=False)
    assert np.allclose(read_predictions(tmp_path / "q.csv")[UNCALIBRATED_PROB], pred[UNCALIBRATED_PROB])
