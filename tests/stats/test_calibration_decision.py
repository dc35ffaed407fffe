"""Calibration, decision curves (dcurves reference) and patient-level aggregation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit

from dlm_ml.stats import (
    aggregate_to_patient,
    brier_score,
    calibration_intercept_slope,
    decision_curve,
    net_benefit,
    reliability_curve,
)


@pytest.fixture(scope="module")
def df_binary(refdata_stats):
    return pd.read_csv(refdata_stats / "dcurves_df_binary.csv")


# --------------------------------------------------------------------------- dcurves
def test_dcurves_net_benefit_at_025(df_binary):
    dc = decision_curve(df_binary.cancer, {"cancerpredmarker": df_binary.cancerpredmarker}, [0.25])
    nb = dc.set_index("strategy")["net_benefit"]
    assert nb["cancerpredmarker"] == pytest.approx(0.0640000, abs=5e-8)
    assert nb["treat_all"] == pytest.approx(-0.1466667, abs=5e-8)
    assert nb["treat_none"] == 0.0
    assert net_benefit(df_binary.cancer, df_binary.cancerpredmarker, 0.25)[0] == pytest.approx(0.064, abs=5e-8)


def test_decision_curve_tidy_frame_and_labels(df_binary):
    th = np.arange(0.01, 1.0, 0.01)
    calls = (df_binary.cancerpredmarker >= 0.3).astype(int)
    dc = decision_curve(
        df_binary.cancer,
        {"model": df_binary.cancerpredmarker, "reader": calls},
        th,
        treat_all_label="resect all",
        treat_none_label="leave all",
    )
    assert list(dc.columns) == ["strategy", "threshold", "net_benefit", "tp", "fp", "n", "net_interventions_avoided"]
    assert list(dc.strategy.unique()) == ["resect all", "leave all", "model", "reader"]
    assert len(dc) == 4 * th.size
    y = df_binary.cancer.to_numpy().astype(bool)
    p = df_binary.cancerpredmarker.to_numpy()
    n = y.size
    for t in (0.05, 0.2, 0.5):
        row = dc[(dc.strategy == "model") & np.isclose(dc.threshold, t)].iloc[0]
        tp, fp = np.sum((p >= t) & y), np.sum((p >= t) & ~y)
        assert (row.tp, row.fp, row.n) == (tp, fp, n)
        assert row.net_benefit == pytest.approx(tp / n - fp / n * t / (1 - t))
        nb_all = y.mean() - (1 - y.mean()) * t / (1 - t)
        assert row.net_interventions_avoided == pytest.approx((row.net_benefit - nb_all) * (1 - t) / t)
    # binary calls are fixed whatever the threshold
    reader = dc[dc.strategy == "reader"]
    assert reader.tp.nunique() == 1 and reader.fp.nunique() == 1
    nb = net_benefit(y, calls, th)
    np.testing.assert_allclose(reader.net_benefit, nb)


def test_decision_curve_errors(df_binary):
    y = df_binary.cancer
    with pytest.raises(ValueError, match="thresholds"):
        decision_curve(y, {"m": df_binary.cancerpredmarker}, [0.5, 1.0])
    with pytest.raises(ValueError, match="clashes"):
        decision_curve(y, {"treat_all": df_binary.cancerpredmarker}, [0.5])
    with pytest.raises(ValueError, match=r"predictions\['m'\]"):
        decision_curve(y, {"m": df_binary.marker}, [0.5])  # marker is not a probability
    with pytest.raises(ValueError, match="non-empty mapping"):
        decision_curve(y, {}, [0.5])


def test_treat_none_nia_at_zero_threshold_is_nan(df_binary):
    dc = decision_curve(df_binary.cancer, {"m": df_binary.cancerpredmarker}, [0.0, 0.1])
    assert dc[dc.threshold == 0.0].net_interventions_avoided.isna().all()
    assert dc[(dc.threshold == 0.0) & (dc.strategy == "treat_all")].net_benefit.iloc[0] == pytest.approx(105 / 750)


# --------------------------------------------------------------------------- calibration
def test_brier():
    assert brier_score([1, 0, 1, 0], [1, 0, 1, 0]) == 0.0
    assert brier_score([1, 0, 1, 1], [0.75] * 4) == pytest.approx(0.75 * 0.25)
    assert brier_score([1, 0], [0.2, 0.6]) == pytest.approx((0.64 + 0.36) / 2)
    with pytest.raises(ValueError, match="probabilities"):
        brier_score([1, 0], [1.2, 0.1])


def test_fitted_logistic_model_is_perfectly_calibrated(df_binary):
    """cancerpredmarker is a logistic fit on these data: its recalibration is (0, 1)
    up to the 7-digit rounding of the stored probabilities."""
    res = calibration_intercept_slope(df_binary.cancer, df_binary.cancerpredmarker)
    assert res.converged and res.n == 750 and res.n_events == 105
    assert abs(res.intercept) < 1e-5
    assert res.slope == pytest.approx(1.0, abs=1e-5)
    assert abs(res.slope_model_intercept) < 1e-5


def test_recalibration_recovers_known_distortion(df_binary):
    p = df_binary.cancerpredmarker.to_numpy()
    y = df_binary.cancer.to_numpy()
    base = calibration_intercept_slope(y, p)
    # Doubling the logit makes predictions too extreme: the slope halves exactly.
    res = calibration_intercept_slope(y, expit(2 * logit(p)))
    assert res.slope == pytest.approx(base.slope / 2, rel=1e-8)
    assert res.slope_se == pytest.approx(base.slope_se / 2, rel=1e-6)
    # Shifting the logit by -0.7 (too low) shifts calibration-in-the-large by +0.7.
    shifted = calibration_intercept_slope(y, expit(logit(p) - 0.7))
    assert shifted.intercept == pytest.approx(base.intercept + 0.7, abs=1e-7)


def test_calibration_matches_scipy_optimiser_and_hessian():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.98, 400)
    y = (rng.random(400) < expit(0.3 + 0.6 * logit(p))).astype(int)
    res = calibration_intercept_slope(y, p)
    lp = logit(p)

    def nll(b):
        eta = b[0] + b[1] * lp
        return np.sum(np.logaddexp(0, eta) - y * eta)

    opt = minimize(nll, [0.0, 1.0], method="BFGS", options={"gtol": 1e-9})
    assert (res.slope_model_intercept, res.slope) == pytest.approx(tuple(opt.x), abs=1e-5)
    # SEs from the observed information computed independently
    mu = expit(res.slope_model_intercept + res.slope * lp)
    x = np.column_stack([np.ones_like(lp), lp])
    cov = np.linalg.inv(x.T @ (x * (mu * (1 - mu))[:, None]))
    assert res.slope_se == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-8)
    # calibration-in-the-large: score equation sum(y - expit(a + lp)) = 0
    assert np.sum(y - expit(res.intercept + lp)) == pytest.approx(0, abs=1e-8)
    mu0 = expit(res.intercept + lp)
    assert res.intercept_se == pytest.approx(1 / np.sqrt(np.sum(mu0 * (1 - mu0))), rel=1e-8)


def test_calibration_clipping_and_separation():
    y = np.array([0, 0, 1, 1, 0, 1])
    with pytest.warns(UserWarning, match="2 predicted probabilities of exactly 0 or 1") as caught:
        res = calibration_intercept_slope(y, [0.0, 0.6, 1.0, 0.3, 0.4, 0.5])
    assert [w.category for w in caught] == [UserWarning]  # the clipping only: the fit converged
    assert res.n_clipped == 2 and res.eps == 1e-8 and res.converged
    with pytest.warns(RuntimeWarning, match="converge"):
        sep = calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert not sep.converged
    with pytest.raises(ValueError, match="both classes"):
        calibration_intercept_slope([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="eps"):
        calibration_intercept_slope(y, [0.5] * 6, eps=0.7)


def test_reliability_curve_uniform_and_quantile():
    rng = np.random.default_rng(1)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    p[0] = 1.0  # the top edge belongs to the last bin
    rc = reliability_curve(y, p, n_bins=10)
    assert rc["count"].sum() == 1000 and len(rc) == 10
    np.testing.assert_allclose(rc.bin_low, np.arange(10) / 10)
    sel = (p >= 0.3) & (p < 0.4)
    row = rc[rc.bin == 3].iloc[0]
    assert row["count"] == sel.sum() and row.observed_fraction == pytest.approx(y[sel].mean())
    assert row.mean_predicted == pytest.approx(p[sel].mean())
    assert row.ci_low < row.observed_fraction < row.ci_high
    rq = reliability_curve(y, p, n_bins=4, strategy="quantile")
    assert list(rq["count"]) == [250, 250, 250, 250]
    sparse = reliability_curve([0, 1, 1], [0.05, 0.06, 0.95], n_bins=10)
    assert list(sparse.bin) == [0, 9]  # empty bins omitted
    with pytest.raises(ValueError, match="strategy"):
        reliability_curve(y, p, strategy="kmeans")


# --------------------------------------------------------------------------- patient level
def test_aggregate_to_patient_methods():
    ids = ["b", "a", "a", "c", "c", "c"]
    truth = [1, 1, 0, 1, 1, 1]
    prob = [0.9, 0.5, 0.4, 0.8, 0.5, 0.5]
    mn = aggregate_to_patient(ids, truth, prob, method="min")
    assert list(mn.patient_id) == ["a", "b", "c"]
    assert list(mn.n_lesions) == [2, 1, 3]
    assert list(mn.truth) == [0, 1, 1]  # all lesions pCR
    assert list(mn.prob) == pytest.approx([0.4, 0.9, 0.5])
    assert set(mn.event) == {"all_pcr"}
    pr = aggregate_to_patient(ids, truth, prob, method="product")
    assert list(pr.prob) == pytest.approx([0.2, 0.9, 0.2])
    mx = aggregate_to_patient(ids, truth, prob, method="max")
    assert list(mx.truth) == [1, 1, 1] and set(mx.event) == {"any_pcr"}
    assert list(mx.prob) == pytest.approx([0.5, 0.9, 0.8])
    no = aggregate_to_patient(ids, truth, prob, method="noisy_or")
    assert list(no.prob) == pytest.approx([1 - 0.5 * 0.6, 0.9, 1 - 0.2 * 0.5 * 0.5])
    # Fréchet bounds: product <= min (all pCR) and max <= noisy_or (any pCR)
    assert np.all(pr.prob <= mn.prob + 1e-15) and np.all(mx.prob <= no.prob + 1e-15)


def test_aggregate_to_patient_extremes_and_errors():
    out = aggregate_to_patient([1, 1, 2], [1, 1, 0], [0.0, 1.0, 1.0], method="product")
    assert list(out.prob) == [0.0, 1.0]
    out = aggregate_to_patient([1, 1], [1, 1], [1.0, 0.3], method="noisy_or")
    assert out.prob.iloc[0] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aggregate_to_patient([1] * 300, [1] * 300, [0.01] * 300, method="product")  # no underflow warning
    with pytest.raises(ValueError, match="method"):
        aggregate_to_patient([1], [1], [0.5], method="mean")
    with pytest.raises(ValueError, match="missing"):
        aggregate_to_patient([1, None], [1, 0], [0.5, 0.5])
