"""ROC / DeLong: pROC reference figures on aSAH plus brute-force checks."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_ml.stats import (
    delong_auc_ci,
    delong_covariance,
    delong_test,
    roc_auc,
    roc_curve_points,
)

TOL = 1e-10  # pROC prints full precision; we match to rounding error


# --------------------------------------------------------------------------- pROC aSAH
def test_proc_aucs(asah):
    assert roc_auc(asah.truth, asah.wfns) == pytest.approx(0.823678861788618, abs=TOL)
    assert roc_auc(asah.truth, asah.s100b) == pytest.approx(0.731368563685637, abs=TOL)


def test_proc_delong_variances_and_covariance(asah):
    cov = delong_covariance(asah.truth, np.vstack([asah.s100b, asah.wfns]))
    assert cov.shape == (2, 2)
    assert cov[1, 1] == pytest.approx(0.00146991470882363, abs=TOL)
    assert cov[0, 0] == pytest.approx(0.00266868245717244, abs=TOL)
    assert cov[0, 1] == pytest.approx(0.00119615567376754, abs=TOL)
    assert cov[1, 0] == cov[0, 1]
    # single-score variance agrees with the k = 1 path
    assert delong_auc_ci(asah.truth, asah.wfns).se ** 2 == pytest.approx(0.00146991470882363, abs=TOL)


def test_proc_paired_test(asah):
    res = delong_test(asah.truth, asah.wfns, asah.s100b)
    assert res.z == pytest.approx(2.20898359144091, abs=1e-9)
    assert res.p_value == pytest.approx(0.0271757822291882, abs=TOL)
    assert res.ci_low == pytest.approx(0.0104061769564846, abs=TOL)
    assert res.ci_high == pytest.approx(0.174214419249478, abs=TOL)
    assert res.diff == pytest.approx(0.823678861788618 - 0.731368563685637, abs=TOL)
    assert res.alternative == "two-sided"


def test_proc_paired_test_reversed(asah):
    rev = delong_test(asah.truth, asah.s100b, asah.wfns)
    assert rev.z == pytest.approx(-2.20898359144091, abs=1e-9)
    assert rev.p_value == pytest.approx(0.0271757822291882, abs=TOL)
    assert rev.ci_low == pytest.approx(-0.174214419249478, abs=TOL)
    assert rev.ci_high == pytest.approx(-0.0104061769564846, abs=TOL)


def test_proc_one_sided(asah):
    greater = delong_test(asah.truth, asah.wfns, asah.s100b, alternative="greater")
    assert greater.p_value == pytest.approx(0.0135878911145941, abs=TOL)
    assert greater.ci_high == np.inf and greater.ci_low > 0
    less = delong_test(asah.truth, asah.wfns, asah.s100b, alternative="less")
    assert less.p_value == pytest.approx(1 - 0.0135878911145941, abs=TOL)
    assert less.ci_low == -np.inf


def test_proc_single_auc_ci(asah):
    res = delong_auc_ci(asah.truth, asah.s100b)
    assert res.auc == pytest.approx(0.731368563685637, abs=TOL)
    assert res.ci_low == pytest.approx(0.630118211761623, abs=TOL)
    assert res.ci_high == pytest.approx(0.832618915609651, abs=TOL)
    assert (res.n_pos, res.n_neg) == (41, 72)
    d = res.to_dict()
    assert d["auc"] == res.auc and isinstance(d["n_pos"], int)


# --------------------------------------------------------------------------- brute force
def _brute(truth, scores):
    """O(m n) DeLong from the definitions (DeLong et al. 1988)."""
    truth = np.asarray(truth).astype(bool)
    scores = np.atleast_2d(scores)
    k = scores.shape[0]
    v10, v01, aucs = [], [], []
    for r in range(k):
        x, y = scores[r, truth], scores[r, ~truth]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    v10, v01 = np.array(v10), np.array(v01)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return np.array(aucs), s10 / m + s01 / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 80
    truth = rng.integers(0, 2, n)
    truth[:2] = [0, 1]
    scores = np.vstack([
        np.round(truth + rng.normal(size=n), 0),  # heavy ties
        rng.integers(1, 6, n).astype(float),  # ordinal reader-like score
        truth * 0.5 + rng.normal(size=n),
    ])
    aucs, cov = _brute(truth, scores)
    np.testing.assert_allclose(delong_covariance(truth, scores), cov, atol=1e-14)
    for r in range(3):
        assert roc_auc(truth, scores[r]) == pytest.approx(aucs[r], abs=1e-14)


def test_direction_lower_positive():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 50)
    truth[:2] = [0, 1]
    s = rng.normal(size=50) + truth
    assert roc_auc(truth, -s, direction="lower_positive") == pytest.approx(roc_auc(truth, s), abs=1e-15)
    assert roc_auc(truth, s, direction="lower_positive") == pytest.approx(1 - roc_auc(truth, s), abs=1e-15)
    a = delong_auc_ci(truth, s)
    b = delong_auc_ci(truth, -s, direction="lower_positive")
    assert (a.auc, a.se) == pytest.approx((b.auc, b.se), abs=1e-15)


def test_identical_curves_give_z0_p1(asah):
    res = delong_test(asah.truth, asah.wfns, asah.wfns)
    assert res.z == 0.0 and res.p_value == 1.0 and res.diff == 0.0


def test_perfect_separation():
    truth = np.array([0, 0, 0, 1, 1, 1])
    res = delong_auc_ci(truth, np.arange(6.0))
    assert res.auc == 1.0 and res.se == 0.0 and res.ci_high == 1.0


def test_ci_clipped_to_unit_interval():
    truth = np.array([0, 0, 1, 0, 1, 1])
    res = delong_auc_ci(truth, np.arange(6.0))
    assert res.auc + 1.96 * res.se > 1  # the unclipped bound would exceed 1
    assert res.ci_high == 1.0


# --------------------------------------------------------------------------- ROC curve
def test_roc_curve_points_area_equals_auc():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 200)
    s = np.round(truth + rng.normal(size=200), 1)
    fpr, tpr, thr = roc_curve_points(truth, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(roc_auc(truth, s), abs=1e-12)
    # each vertex is the rate of score >= threshold
    i = len(thr) // 2
    assert tpr[i] == pytest.approx(np.mean(s[truth == 1] >= thr[i]))
    assert fpr[i] == pytest.approx(np.mean(s[truth == 0] >= thr[i]))


def test_roc_curve_points_lower_positive():
    truth = np.array([1, 1, 0, 0])
    fpr, tpr, thr = roc_curve_points(truth, [1.0, 2.0, 3.0, 4.0], direction="lower_positive")
    assert thr[0] == -np.inf and list(thr[1:]) == [1.0, 2.0, 3.0, 4.0]
    assert list(tpr) == [0, 0.5, 1, 1, 1] and list(fpr) == [0, 0, 0, 0.5, 1]


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "truth, score, match",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "both classes"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "only 0/1"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "`score` must be finite"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([[0, 1]], [0.1, 0.2], "`truth` must be 1-D"),
        ([], [], "`truth` is empty"),
        (["a", "b"], [0.1, 0.2], "`truth` must hold"),
    ],
)
def test_validation_messages(truth, score, match):
    with pytest.raises(ValueError, match=match):
        roc_auc(truth, score)


def test_validation_options():
    with pytest.raises(ValueError, match="direction"):
        roc_auc([0, 1], [0, 1], direction="auto")
    with pytest.raises(ValueError, match="alternative"):
        delong_test([0, 1, 0, 1], [1, 2, 3, 4], [1, 2, 4, 3], alternative="two.sided")
    with pytest.raises(ValueError, match="alpha"):
        delong_auc_ci([0, 1, 0, 1], [1, 2, 3, 4], alpha=1.5)
    with pytest.raises(ValueError, match="score_b"):
        delong_test([0, 1, 0, 1], [1, 2, 3, 4], [1, 2, np.inf, 3])
    with pytest.raises(ValueError, match="one column per observation"):
        delong_covariance([0, 1, 0, 1], np.ones((4, 2)))


def test_bool_truth_accepted():
    truth = np.array([False, True, False, True])
    assert roc_auc(truth, [1, 2, 3, 4]) == 0.75
