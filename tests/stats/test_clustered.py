"""Clustered AUC (Obuchowski 1997) and the patient-level bootstrap."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import norm

from dlm_ml.stats import (
    cluster_bootstrap_auc,
    cluster_bootstrap_ci,
    clustered_auc,
    clustered_auc_covariance,
    clustered_auc_difference,
    delong_auc_ci,
    delong_test,
    roc_auc,
)


def _obuchowski_brute(truth, scores, clusters):
    """Obuchowski (1997) eqs. written out with explicit loops over clusters and pairs."""
    truth = np.asarray(truth).astype(bool)
    scores = np.atleast_2d(scores)
    labels = list(dict.fromkeys(clusters))
    big_i = len(labels)
    idx = [np.flatnonzero(np.asarray(clusters) == c) for c in labels]
    k = scores.shape[0]
    pos_all, neg_all = np.flatnonzero(truth), np.flatnonzero(~truth)
    big_m, big_n = len(pos_all), len(neg_all)

    def psi(a, b):
        return 1.0 if a > b else (0.5 if a == b else 0.0)

    theta = np.zeros(k)
    a_i = np.zeros((k, big_i))
    b_i = np.zeros((k, big_i))
    for r in range(k):
        s = scores[r]
        theta[r] = sum(psi(s[j], s[c]) for j in pos_all for c in neg_all) / (big_m * big_n)
        for ci, members in enumerate(idx):
            pos = [j for j in members if truth[j]]
            neg = [c for c in members if not truth[c]]
            v10 = sum(sum(psi(s[j], s[c]) for c in neg_all) / big_n for j in pos)
            v01 = sum(sum(psi(s[j], s[c]) for j in pos_all) / big_m for c in neg)
            a_i[r, ci] = v10 - len(pos) * theta[r]
            b_i[r, ci] = v01 - len(neg) * theta[r]
    m_i = np.array([truth[m].sum() for m in idx])
    n_i = np.array([(~truth[m]).sum() for m in idx])
    i10, i01 = (m_i > 0).sum(), (n_i > 0).sum()
    cov = np.zeros((k, k))
    for r in range(k):
        for q in range(k):
            s10 = i10 / ((i10 - 1) * big_m) * np.sum(a_i[r] * a_i[q])
            s01 = i01 / ((i01 - 1) * big_n) * np.sum(b_i[r] * b_i[q])
            s11_rq = big_i / (big_i - 1) * np.sum(a_i[r] * b_i[q])
            s11_qr = big_i / (big_i - 1) * np.sum(a_i[q] * b_i[r])
            cov[r, q] = s10 / big_m + s01 / big_n + (s11_rq + s11_qr) / (big_m * big_n)
    return theta, cov


@pytest.mark.parametrize("seed", [0, 1])
def test_obuchowski_matches_brute_force(seed, clustered_factory):
    rng = np.random.default_rng(seed)
    truth, s1, clusters = clustered_factory(rng, 25, effect=1.0, ties=True)
    s2 = np.round(s1 + rng.normal(size=s1.size), 1)
    labels = np.array([f"P{c:03d}" for c in clusters])
    theta, cov = _obuchowski_brute(truth, np.vstack([s1, s2]), labels)
    got = clustered_auc_covariance(truth, np.vstack([s1, s2]), labels)
    np.testing.assert_allclose(got, cov, rtol=1e-12, atol=1e-15)
    res = clustered_auc(truth, s1, labels)
    assert res.auc == pytest.approx(theta[0], abs=1e-14)
    assert res.se**2 == pytest.approx(cov[0, 0], rel=1e-12)
    diff = clustered_auc_difference(truth, s1, s2, labels)
    assert diff.se**2 == pytest.approx(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], rel=1e-10)
    assert diff.z == pytest.approx((theta[0] - theta[1]) / diff.se, rel=1e-12)
    assert diff.p_value == pytest.approx(2 * norm.sf(abs(diff.z)), rel=1e-12)


def test_singleton_clusters_equal_delong_exactly(asah):
    """Derived identity: one lesion per cluster => Obuchowski variance == DeLong variance."""
    ids = np.arange(len(asah))
    # The Wald interval ("normal") is the one that equals pROC's DeLong interval.
    cl = clustered_auc(asah.truth, asah.s100b, ids, ci_method="normal")
    dl = delong_auc_ci(asah.truth, asah.s100b)
    assert cl.se == pytest.approx(dl.se, rel=1e-12)
    assert cl.se == pytest.approx(cl.se_unclustered, rel=1e-12)
    assert (cl.ci_low, cl.ci_high) == pytest.approx((dl.ci_low, dl.ci_high), rel=1e-12)
    d1 = clustered_auc_difference(asah.truth, asah.wfns, asah.s100b, ids)
    d2 = delong_test(asah.truth, asah.wfns, asah.s100b)
    assert (d1.z, d1.p_value, d1.ci_low) == pytest.approx((d2.z, d2.p_value, d2.ci_low), rel=1e-10)


def test_invariant_to_row_order_and_labels(clustered_factory):
    rng = np.random.default_rng(5)
    truth, score, clusters = clustered_factory(rng, 40, effect=0.8)
    a = clustered_auc(truth, score, clusters)
    perm = rng.permutation(truth.size)
    relabel = np.array([f"id-{(c * 7) % 41}" for c in clusters])
    b = clustered_auc(truth[perm], score[perm], relabel[perm])
    assert (a.auc, a.se, a.n_clusters) == pytest.approx((b.auc, b.se, b.n_clusters), rel=1e-12)


def test_clustering_inflates_variance_when_lesions_share_patient():
    # Every patient: one case and one control with nearly the same score
    # => strongly clustered; the naive DeLong SE differs from the clustered SE.
    rng = np.random.default_rng(6)
    n = 60
    u = rng.normal(size=n)
    truth = np.tile([1, 0], n)
    score = np.repeat(u, 2) + 0.01 * rng.normal(size=2 * n) + 0.2 * truth
    clusters = np.repeat(np.arange(n), 2)
    res = clustered_auc(truth, score, clusters)
    assert res.se != pytest.approx(res.se_unclustered, rel=0.05)


def test_clustered_errors():
    truth = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 2 clusters"):
        clustered_auc(truth, [0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="missing"):
        clustered_auc(truth, [0.1, 0.2, 0.3, 0.4], ["a", None, "b", "c"])
    with pytest.raises(ValueError, match="same length"):
        clustered_auc(truth, [0.1, 0.2, 0.3, 0.4], ["a", "b", "c"])


def test_difference_swap_and_identical(clustered_factory):
    rng = np.random.default_rng(7)
    truth, s1, cl = clustered_factory(rng, 50, effect=1.0)
    s2 = s1 + rng.normal(size=s1.size)
    ab = clustered_auc_difference(truth, s1, s2, cl)
    ba = clustered_auc_difference(truth, s2, s1, cl)
    assert ab.diff == pytest.approx(-ba.diff) and ab.z == pytest.approx(-ba.z)
    assert ab.p_value == pytest.approx(ba.p_value)
    same = clustered_auc_difference(truth, s1, s1, cl)
    assert same.z == 0.0 and same.p_value == 1.0
    one = clustered_auc_difference(truth, s1, s2, cl, alternative="greater")
    assert one.p_value == pytest.approx(norm.sf(ab.z))


# --------------------------------------------------------------------------- bootstrap
def _auc_metric(t, s):
    return roc_auc(t, s)  # a wrapper: not `roc_auc` itself, so the generic loop runs


def test_fast_bootstrap_equals_generic_loop(clustered_factory):
    rng = np.random.default_rng(8)
    truth, score, cl = clustered_factory(rng, 30, effect=0.7, ties=True)
    fast = cluster_bootstrap_auc(truth, score, cl, n_boot=300, seed=11)
    slow = cluster_bootstrap_ci(_auc_metric, cl, truth, score, n_boot=300, seed=11)
    np.testing.assert_allclose(fast.replicates, slow.replicates, rtol=0, atol=1e-12)
    assert (fast.ci_low, fast.ci_high, fast.n_failed) == pytest.approx((slow.ci_low, slow.ci_high, slow.n_failed))
    # BCa: the jackknife of the fast path equals the generic one
    fb = cluster_bootstrap_auc(truth, score, cl, n_boot=300, seed=11, method="bca")
    sb = cluster_bootstrap_ci(_auc_metric, cl, truth, score, n_boot=300, seed=11, method="bca")
    assert fb.acceleration == pytest.approx(sb.acceleration, rel=1e-9)
    assert (fb.ci_low, fb.ci_high) == pytest.approx((sb.ci_low, sb.ci_high), rel=1e-12)
    # Passing roc_auc itself dispatches to the fast path
    disp = cluster_bootstrap_ci(roc_auc, cl, truth, score, n_boot=300, seed=11)
    np.testing.assert_array_equal(disp.replicates, fast.replicates)


def test_bootstrap_replicates_are_resample_aucs():
    """Every replicate recomputed by hand from the same generator draws."""
    truth = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    score = np.array([0.1, 0.9, 0.4, 0.4, 0.8, 0.3, 0.7, 0.6, 0.2, 0.5])
    cl = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a few one-class resamples
        res = cluster_bootstrap_auc(truth, score, cl, n_boot=50, seed=3)
    draws = np.random.default_rng(3).integers(0, 5, size=(50, 5))
    expected = []
    for row in draws:
        idx = np.concatenate([np.flatnonzero(cl == c) for c in row])
        if 0 < truth[idx].sum() < idx.size:
            expected.append(roc_auc(truth[idx], score[idx]))
    assert len(expected) > 40
    np.testing.assert_allclose(res.replicates, expected, atol=1e-12)
    assert res.n_failed == 50 - len(expected)


def test_bootstrap_percentile_and_reproducible(clustered_factory):
    rng = np.random.default_rng(9)
    truth, score, cl = clustered_factory(rng, 60, effect=1.0)
    a = cluster_bootstrap_auc(truth, score, cl, n_boot=400, seed=1)
    b = cluster_bootstrap_auc(truth, score, cl, n_boot=400, seed=1)
    c = cluster_bootstrap_auc(truth, score, cl, n_boot=400, seed=2)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high) and a.ci_low != c.ci_low
    lo, hi = np.quantile(a.replicates, [0.025, 0.975])
    assert (a.ci_low, a.ci_high) == (lo, hi)
    assert a.estimate == pytest.approx(roc_auc(truth, score))
    assert a.n_boot == 400 and a.replicates.size == 400 - a.n_failed
    assert "replicates" not in a.to_dict()


def test_bca_formula_by_hand(clustered_factory):
    rng = np.random.default_rng(10)
    truth, score, cl = clustered_factory(rng, 40, effect=0.8)
    res = cluster_bootstrap_auc(truth, score, cl, n_boot=500, seed=4, method="bca")
    jack = []
    for c in np.unique(cl):
        keep = cl != c
        jack.append(roc_auc(truth[keep], score[keep]))
    jack = np.array(jack)
    d = jack.mean() - jack
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    assert res.acceleration == pytest.approx(a, rel=1e-9)
    reps, est = res.replicates, res.estimate
    z0 = norm.ppf((np.sum(reps < est) + 0.5 * np.sum(reps == est)) / reps.size)
    assert res.bias_correction == pytest.approx(z0)
    zq = norm.ppf([0.025, 0.975])
    q = norm.cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq)))
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.quantile(reps, q)))


def test_failed_replicates_counted_and_warned():
    # 2 patients hold all cases among 8: some resamples have no case at all.
    truth = np.array([1, 0, 1, 0] + [0] * 12)
    score = np.arange(16.0)
    cl = np.repeat(np.arange(8), 2)
    with pytest.warns(RuntimeWarning, match="undefined"):
        res = cluster_bootstrap_auc(truth, score, cl, n_boot=400, seed=0)
    draws = np.random.default_rng(0).integers(0, 8, size=(400, 8))
    expected_failed = int(np.sum(~np.any(draws < 2, axis=1)))  # no draw of cluster 0 or 1
    assert res.n_failed == expected_failed > 0
    assert res.replicates.size == 400 - expected_failed
    with pytest.warns(RuntimeWarning):
        gen = cluster_bootstrap_ci(_auc_metric, cl, truth, score, n_boot=400, seed=0)
    assert gen.n_failed == expected_failed


def test_generic_bootstrap_other_metric():
    rng = np.random.default_rng(12)
    cl = np.repeat(np.arange(50), 3)
    x = rng.normal(size=50)[cl] + rng.normal(size=150)
    res = cluster_bootstrap_ci(np.mean, cl, x, n_boot=500, seed=0)
    cluster_means = np.array([x[cl == c].mean() for c in range(50)])
    # For equal cluster sizes the bootstrap SE of the mean ~ SD(cluster means)/sqrt(I).
    assert res.se == pytest.approx(cluster_means.std(ddof=1) / np.sqrt(50), rel=0.15)
    assert res.ci_low < x.mean() < res.ci_high


def test_bootstrap_se_close_to_obuchowski(clustered_factory):
    rng = np.random.default_rng(13)
    truth, score, cl = clustered_factory(rng, 250, effect=0.8)
    boot = cluster_bootstrap_auc(truth, score, cl, n_boot=1000, seed=0)
    ob = clustered_auc(truth, score, cl)
    assert boot.se == pytest.approx(ob.se, rel=0.15)


def test_bootstrap_argument_errors():
    truth, score, cl = np.array([0, 1, 0, 1]), np.array([1.0, 2, 3, 4]), np.array([1, 1, 2, 2])
    with pytest.raises(ValueError, match="method"):
        cluster_bootstrap_auc(truth, score, cl, method="basic")
    with pytest.raises(ValueError, match="n_boot"):
        cluster_bootstrap_auc(truth, score, cl, n_boot=1)
    with pytest.raises(ValueError, match="first dimension"):
        cluster_bootstrap_ci(np.mean, cl, np.arange(3.0))
    with pytest.raises(ValueError, match="callable"):
        cluster_bootstrap_ci("auc", cl, truth)


def test_warning_free_on_regular_data(clustered_factory):
    rng = np.random.default_rng(14)
    truth, score, cl = clustered_factory(rng, 100, effect=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cluster_bootstrap_auc(truth, score, cl, n_boot=200, method="bca")
    assert res.n_failed == 0
