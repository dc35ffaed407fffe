"""Resamples drawn once (ClusterResamples) give the bootstraps' own draws for the same seed, and a
subset of patients takes its patients' multiplicities; the weighted ROC band equals resampling."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_ml import stats


@pytest.fixture(scope="module")
def lesions():
    rng = np.random.default_rng(4)
    patients = np.repeat([f"P{i:02d}" for i in range(25)], rng.integers(1, 4, 25))
    truth = rng.integers(0, 2, patients.size)
    score = np.round(rng.normal(size=patients.size) + truth, 1)  # ties
    return truth, score, patients


def test_shared_resamples_are_the_seeds_draws(lesions):
    truth, score, patients = lesions
    shared = stats.draw_cluster_resamples(patients, n_boot=300, seed=9)
    assert shared.counts.shape == (300, 25) and (shared.counts.sum(axis=1) == 25).all()
    a = stats.cluster_bootstrap_auc(truth, score, patients, n_boot=300, seed=9)
    b = stats.cluster_bootstrap_auc(truth, score, patients, resamples=shared)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    c = stats.cluster_bootstrap_proportion(truth, score > 0.5, patients, metric="sensitivity", n_boot=300, seed=9)
    d = stats.cluster_bootstrap_proportion(truth, score > 0.5, patients, metric="sensitivity", resamples=shared)
    np.testing.assert_array_equal(c.replicates, d.replicates)


def test_a_subset_uses_its_patients_multiplicities(lesions):
    truth, score, patients = lesions
    shared = stats.draw_cluster_resamples(patients, n_boot=200, seed=2)
    keep = patients < "P15"
    result = stats.cluster_bootstrap_ci(lambda t, s: stats.roc_auc(t, s) if len(set(t)) == 2 else np.nan,
                                        patients[keep], truth[keep], score[keep], resamples=shared)
    fast = stats.cluster_bootstrap_auc(truth[keep], score[keep], patients[keep], resamples=shared)
    np.testing.assert_allclose(np.sort(result.replicates), np.sort(fast.replicates), rtol=1e-12)
    with pytest.raises(ValueError, match="not among the 25 clusters"):
        stats.cluster_bootstrap_auc(truth, score, np.where(keep, patients, "X99"), resamples=shared)


def test_weighted_roc_band_equals_the_band_of_the_resampled_lesions(lesions):
    truth, score, patients = lesions
    band = stats.roc_band(truth, score, patients, n_boot=150, seed=3)
    shared = stats.draw_cluster_resamples(patients, n_boot=150, seed=3)
    codes = np.unique(patients, return_inverse=True)[1]
    members = [np.flatnonzero(codes == i) for i in range(25)]
    tprs = []
    for row in shared.counts:  # the resampled lesions, each drawn patient as often as drawn
        idx = np.concatenate([np.tile(members[c], k) for c, k in enumerate(row) if k])
        if len(set(truth[idx])) == 2:
            curve = stats.roc_curve_points(truth[idx], score[idx])
            tprs.append(np.interp(band.fpr, curve.fpr, curve.tpr))
    low, high = np.quantile(np.vstack(tprs), [0.025, 0.975], axis=0)
    np.testing.assert_array_equal(band.tpr_low, low)
    np.testing.assert_array_equal(band.tpr_high, high)
