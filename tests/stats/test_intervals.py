"""Report intervals in dlm_ml.stats: patient-bootstrap proportions and ROC band, Wald interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from dlm_ml import stats


@pytest.fixture()
def calls():
    rng = np.random.default_rng(4)
    n = 120
    patients = rng.integers(0, 35, n)
    truth = rng.integers(0, 2, n)
    call = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    return truth, call, patients


@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "ppv", "npv"])
def test_vectorised_proportion_equals_generic_cluster_bootstrap(calls, metric):
    truth, call, patients = calls
    fast = stats.cluster_bootstrap_proportion(truth, call, patients, metric=metric, n_boot=300, seed=9)
    slow = stats.cluster_bootstrap_ci(stats.proportion_metric(metric), patients, truth, call, n_boot=300, seed=9)
    np.testing.assert_allclose(fast.replicates, slow.replicates)
    assert (fast.estimate, fast.ci_low, fast.ci_high, fast.n_failed) == \
        pytest.approx((slow.estimate, slow.ci_low, slow.ci_high, slow.n_failed))
    bca = stats.cluster_bootstrap_proportion(truth, call, patients, metric=metric, n_boot=300, seed=9, method="bca")
    assert bca.ci_low == pytest.approx(stats.cluster_bootstrap_ci(stats.proportion_metric(metric), patients, truth,
                                                                  call, n_boot=300, seed=9, method="bca").ci_low)


def test_proportion_definitions(calls):
    truth, call, _ = calls
    dm = stats.diagnostic_metrics(truth, call)
    for metric in ("sensitivity", "specificity", "ppv", "npv"):
        assert stats.proportion_metric(metric)(truth, call) == pytest.approx(getattr(dm, metric).estimate)


def test_undefined_proportion_is_refused_with_reason():
    with pytest.raises(ValueError, match="ppv is undefined"):
        stats.cluster_bootstrap_proportion([1, 0, 1], [0, 0, 0], ["a", "b", "c"], metric="ppv", n_boot=10)
    with pytest.raises(ValueError, match="metric"):
        stats.cluster_bootstrap_proportion([1, 0], [1, 0], ["a", "b"], metric="accuracy", n_boot=10)


def test_roc_band_contains_the_curve_and_is_reproducible(calls):
    truth, _, patients = calls
    score = truth + np.random.default_rng(2).normal(0, 1, truth.size)
    a = stats.roc_band(truth, score, patients, n_boot=200, seed=1)
    b = stats.roc_band(truth, score, patients, n_boot=200, seed=1)
    np.testing.assert_array_equal(a.tpr_low, b.tpr_low)
    curve = stats.roc_curve_points(truth, score)
    tpr = np.interp(a.fpr, curve.fpr, curve.tpr)
    inside = (a.tpr_low <= tpr + 1e-12) & (tpr <= a.tpr_high + 1e-12)
    assert inside.mean() > 0.9 and np.all(a.tpr_low <= a.tpr_high)
    assert a.n_clusters == len(np.unique(patients)) and a.to_dict()["n_boot"] == 200


def test_roc_band_counts_one_class_replicates():
    band = stats.roc_band([1, 0, 1, 0], [0.9, 0.1, 0.6, 0.4], ["a", "b", "c", "d"], n_boot=200, seed=0)
    assert 0 < band.n_failed < 200  # 4 single-lesion patients: some resamples hold one class only


def test_wald_interval():
    low, high = stats.wald_interval(1.2, 0.3, alpha=0.1)
    assert (low, high) == pytest.approx((1.2 - norm.ppf(0.95) * 0.3, 1.2 + norm.ppf(0.95) * 0.3))
    assert np.isnan(stats.wald_interval(1.0, float("nan"))[0])
