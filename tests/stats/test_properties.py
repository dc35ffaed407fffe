"""Property-based tests (hypothesis) and seeded coverage simulations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from dlm_ml.stats import (
    cluster_bootstrap_auc,
    clustered_auc,
    clustered_auc_difference,
    delong_auc_ci,
    delong_test,
    roc_auc,
)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def labelled_scores(draw, min_size=4, max_size=40, n_scores=1, min_class=1):
    """Truth with at least ``min_class`` of each class and integer-valued scores (ties occur)."""
    n = draw(st.integers(min_size, max_size))
    truth = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    assume(min_class <= truth.sum() <= n - min_class)
    scores = [
        np.array(draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n)), dtype=float)
        for _ in range(n_scores)
    ]
    return (truth, *scores)


@SETTINGS
@given(labelled_scores())
def test_auc_invariant_under_strictly_monotone_transform(data):
    truth, s = data
    auc = roc_auc(truth, s)
    assert 0.0 <= auc <= 1.0
    for f in (lambda x: x**3 + 2 * x, lambda x: np.exp(x / 10), lambda x: 3.5 * x - 7):
        assert roc_auc(truth, f(s)) == pytest.approx(auc, abs=1e-12)
    # and a decreasing transform with the direction flipped
    assert roc_auc(truth, -s, direction="lower_positive") == pytest.approx(auc, abs=1e-12)
    assert roc_auc(truth, -s) == pytest.approx(1 - auc, abs=1e-12)
    # variance is invariant too
    # (NaN for a single case or control, where the variance is undefined)
    np.testing.assert_allclose(
        delong_auc_ci(truth, np.exp(s / 10)).se, delong_auc_ci(truth, s).se, atol=1e-12, equal_nan=True
    )


@SETTINGS
@given(labelled_scores(n_scores=2, min_class=2), st.sampled_from(["two-sided", "greater", "less"]))
def test_delong_swap_flips_sign_same_p(data, alternative):
    truth, a, b = data
    ab = delong_test(truth, a, b)
    ba = delong_test(truth, b, a)
    assert ab.diff == pytest.approx(-ba.diff, abs=1e-12)
    assert ab.z == pytest.approx(-ba.z, abs=1e-9) or (np.isinf(ab.z) and ab.z == -ba.z)
    assert ab.p_value == pytest.approx(ba.p_value, abs=1e-12)
    assert (ab.ci_low, ab.ci_high) == pytest.approx((-ba.ci_high, -ba.ci_low), abs=1e-12)
    one = delong_test(truth, a, b, alternative=alternative)
    flipped = {"greater": "less", "less": "greater", "two-sided": "two-sided"}[alternative]
    assert one.p_value == pytest.approx(delong_test(truth, b, a, alternative=flipped).p_value, abs=1e-12)


@SETTINGS
@given(labelled_scores(min_size=6, n_scores=2, min_class=2))
def test_singleton_clusters_equal_delong(data):
    """Derived identity (see dlm_ml.stats.clustered): with one lesion per cluster
    Obuchowski's variance equals DeLong's exactly, covariance included."""
    truth, a, b = data
    ids = np.arange(truth.size)
    assert clustered_auc(truth, a, ids).se == pytest.approx(delong_auc_ci(truth, a).se, rel=1e-9, abs=1e-12)
    cd = clustered_auc_difference(truth, a, b, ids)
    dd = delong_test(truth, a, b)
    assert cd.se == pytest.approx(dd.se, rel=1e-9, abs=1e-12)


@SETTINGS
@given(labelled_scores(min_size=8, max_size=30), st.integers(2, 6), st.integers(0, 2**31))
def test_clustered_variance_nonnegative_and_label_invariant(data, n_clusters, seed):
    truth, s = data
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, n_clusters, truth.size)
    m_cl, n_cl = np.unique(cl[truth == 1]).size, np.unique(cl[truth == 0]).size
    assume(m_cl >= 2 and n_cl >= 2)
    res = clustered_auc(truth, s, cl)
    assert res.se >= 0 and res.auc == pytest.approx(roc_auc(truth, s), abs=1e-12)
    renamed = clustered_auc(truth, s, np.array([f"p{c}" for c in cl]))
    assert renamed.se == pytest.approx(res.se, abs=1e-12)


# --------------------------------------------------------------------------- coverage
def test_delong_ci_coverage_binormal():
    rng = np.random.default_rng(2024)
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    reps, hits = 400, 0
    for _ in range(reps):
        truth = np.r_[np.ones(60), np.zeros(80)].astype(int)
        score = rng.normal(size=140) + d * truth
        r = delong_auc_ci(truth, score)
        hits += r.ci_low <= true_auc <= r.ci_high
    assert 0.90 <= hits / reps <= 0.99


def test_clustered_ci_coverage_under_null(clustered_factory):
    """Null (true AUC 0.5) with truth and score both clustered in patients."""
    rng = np.random.default_rng(7)
    reps, hits, hits_naive = 400, 0, 0
    for _ in range(reps):
        truth, score, cl = clustered_factory(rng, 60, effect=0.0, cluster_sd=1.5)
        r = clustered_auc(truth, score, cl)
        hits += r.ci_low <= 0.5 <= r.ci_high
        hits_naive += abs(r.auc - 0.5) <= 1.959964 * r.se_unclustered
    assert 0.90 <= hits / reps <= 0.99
    # Ignoring the clustering under-covers here: the test could tell them apart.
    assert hits_naive / reps < hits / reps


def test_bootstrap_ci_coverage_under_null(clustered_factory):
    rng = np.random.default_rng(11)
    reps, hits = 200, 0
    for i in range(reps):
        truth, score, cl = clustered_factory(rng, 60, effect=0.0, cluster_sd=1.5)
        r = cluster_bootstrap_auc(truth, score, cl, n_boot=300, seed=i)
        hits += r.ci_low <= 0.5 <= r.ci_high
    assert 0.88 <= hits / reps <= 0.99
