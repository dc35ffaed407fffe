"""Statistics that must refuse or warn instead of returning a misleading number.

* a patient bootstrap of one patient (every resample is that patient: a zero-width interval);
* a calibration fit on probabilities of exactly 0 or 1 (slope and intercept then depend on
  the clipping ``eps``);
* a weighted kappa on categories inferred from the ratings (the weights depend on them);
* Cohen's kappa of string labels against numeric labels (no label in common: kappa 0).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dlm_ml.stats.agreement import cohen_kappa
from dlm_ml.stats.calibration import calibration_intercept_slope
from dlm_ml.stats.clustered import cluster_bootstrap_auc, cluster_bootstrap_ci
from dlm_ml.stats.intervals import cluster_bootstrap_proportion

# One patient with four lesions, two of each outcome: the AUC itself is defined.
TRUTH = np.array([0, 1, 0, 1])
SCORE = np.array([0.1, 0.8, 0.3, 0.6])
CALL = np.array([0, 1, 1, 1])


# --------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_auc_refuses_one_patient(method):
    with pytest.raises(ValueError, match=r"1 patient.*at least 2 patients"):
        cluster_bootstrap_auc(TRUTH, SCORE, ["P1"] * 4, n_boot=50, method=method)


def test_bootstrap_of_any_metric_refuses_one_patient():
    with pytest.raises(ValueError, match=r"1 patient.*at least 2 patients"):
        cluster_bootstrap_ci(lambda s: float(np.mean(s)), ["P1"] * 4, SCORE, n_boot=50)
    with pytest.raises(ValueError, match=r"1 patient.*at least 2 patients"):
        cluster_bootstrap_proportion(TRUTH, CALL, ["P1"] * 4, metric="sensitivity", n_boot=50)


def test_bootstrap_of_two_patients_is_computed():
    # The minimum is 2 patients: the resamples then differ and the interval has width.
    clusters = ["P1", "P1", "P2", "P2"]
    res = cluster_bootstrap_ci(lambda s: float(np.mean(s)), clusters, SCORE, n_boot=200, seed=3)
    assert res.n_clusters == 2 and res.ci_high > res.ci_low


# --------------------------------------------------------------------------- calibration
def test_calibration_warns_when_probabilities_are_clipped():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([0.0, 0.6, 1.0, 0.3, 0.4, 0.5, 0.9, 0.2])
    with pytest.warns(UserWarning, match=r"2 predicted probabilit.*exactly 0 or 1.*eps=1e-08") as caught:
        res = calibration_intercept_slope(y, p)
    assert any("saturated model" in str(w.message) for w in caught)
    assert res.n_clipped == 2
    assert "2 probabilities of exactly 0 or 1 clipped" in res.summary()


def test_calibration_inside_the_unit_interval_gives_no_warning():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([1e-6, 0.6, 1 - 1e-6, 0.3, 0.4, 0.5, 0.9, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = calibration_intercept_slope(y, p)
    assert res.n_clipped == 0
    assert "clipped" not in res.summary()


# --------------------------------------------------------------------------- kappa
# 1-5 Likert scores; nobody gave 3, so the inferred categories space 2 and 4 as neighbours.
LIKERT_A = [1, 2, 2, 4, 5, 5, 1, 4]
LIKERT_B = [1, 2, 4, 4, 5, 4, 2, 4]


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weighted_kappa_warns_about_inferred_categories(weights):
    with pytest.warns(UserWarning, match=r"inferred.*\[1, 2, 4, 5\].*categories=") as caught:
        inferred = cohen_kappa(LIKERT_A, LIKERT_B, weights=weights)
    assert [w.message.categories for w in caught] == [(1, 2, 4, 5)]  # what a CLI can restate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stated = cohen_kappa(LIKERT_A, LIKERT_B, weights=weights, categories=[1, 2, 3, 4, 5])
        unweighted = cohen_kappa(LIKERT_A, LIKERT_B)
    # the reason for the warning: an unused intermediate category changes the weighted kappa
    assert stated.kappa != pytest.approx(inferred.kappa)
    assert unweighted.categories == (1, 2, 4, 5)


def test_kappa_refuses_string_labels_against_numbers():
    with pytest.raises(ValueError, match=r"`a`.*str.*'1'.*`b`.*int.*1"):
        cohen_kappa(["1", "2", "1", "2"], [1, 2, 1, 1])
    with pytest.raises(ValueError, match=r"`a`.*float.*1\.0.*`b`.*str.*'1'"):
        cohen_kappa(np.array([1.0, 2.0]), np.array(["1", "2"]))


def test_kappa_accepts_equal_numbers_of_int_and_float_type():
    res = cohen_kappa([1, 2, 1, 2], np.array([1.0, 2.0, 1.0, 2.0]))
    assert res.kappa == 1.0 and len(res.categories) == 2
