"""Covariance of the reader × test AUCs for the Obuchowski–Rockette analysis.

Empirical AUCs and DeLong placement values of many rating rows at once, and the
delete-one-cluster jackknife covariance of those AUCs (a cluster is one case unless a
cluster column groups cases into patients). The DeLong and Obuchowski clustered
covariances come from :mod:`dlm_ml.stats.roc` and :mod:`dlm_ml.stats.clustered`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__: list[str] = []  # private module: dlm_ml.stats.mrmc is the public home


def _structural_components(scores: np.ndarray, truth: np.ndarray):
    """DeLong placement values by midranks (Sun & Xu 2014), vectorised over rows.

    ``v10[k, a]`` is the fraction of negatives rated below positive ``a`` (ties
    one half); ``v01[k, b]`` the fraction of positives rated above negative ``b``.
    """
    pos = truth == 1
    m, n = int(pos.sum()), int((~pos).sum())
    rank_all = stats.rankdata(scores, axis=1)
    v10 = (rank_all[:, pos] - stats.rankdata(scores[:, pos], axis=1)) / n
    v01 = 1.0 - (rank_all[:, ~pos] - stats.rankdata(scores[:, ~pos], axis=1)) / m
    return v10, v01, v10.mean(axis=1)


def _sum_by_group(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``values`` (k × N) per group label, as a k × n_groups array."""
    out = np.zeros((values.shape[0], n_groups))
    if groups.size == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    out[:, g_sorted[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
    return out


def _jackknife_cov(scores, pos, v10, v01, auc, groups, n_groups):
    """Delete-one-cluster jackknife covariance of the AUCs (clusters = cases by default).

    Leaving out cluster g removes its positives' rows and negatives' columns of
    the m × n kernel matrix; the kernel entries pairing a positive and a negative
    of the same cluster were removed twice and are added back. This gives every
    leave-one-out AUC in O(k·N) instead of refitting N times.
    """
    m, n = v10.shape[1], v01.shape[1]
    g_pos, g_neg = groups[pos], groups[~pos]
    m_g = np.bincount(g_pos, minlength=n_groups)
    n_g = np.bincount(g_neg, minlength=n_groups)
    if np.any(m_g == m) or np.any(n_g == n):
        raise ValueError(
            "The jackknife needs positive and negative cases outside every left-out "
            "unit: one cluster holds all positive or all negative cases."
        )
    within = _within_cluster_kernel(scores, pos, g_pos, g_neg, n_groups)
    num = (m * n * auc)[:, None] - n * _sum_by_group(v10, g_pos, n_groups) \
        - m * _sum_by_group(v01, g_neg, n_groups) + within
    loo = num / ((m - m_g) * (n - n_g))
    dev = loo - loo.mean(axis=1, keepdims=True)
    return (n_groups - 1) / n_groups * (dev @ dev.T)


def _within_cluster_kernel(scores, pos, g_pos, g_neg, n_groups):
    """Per cluster, the sum of ψ(positive, negative) over pairs inside the cluster."""
    if n_groups == pos.size:  # one case per cluster: no within-cluster pairs
        return np.zeros((scores.shape[0], n_groups))
    pairs = pd.DataFrame({"g": g_pos, "a": np.arange(g_pos.size)}).merge(
        pd.DataFrame({"g": g_neg, "b": np.arange(g_neg.size)}), on="g")
    if pairs.empty:
        return np.zeros((scores.shape[0], n_groups))
    xa = scores[:, pos][:, pairs["a"].to_numpy()]
    xb = scores[:, ~pos][:, pairs["b"].to_numpy()]
    psi = (xa > xb) + 0.5 * (xa == xb)
    return _sum_by_group(psi, pairs["g"].to_numpy(), n_groups)
