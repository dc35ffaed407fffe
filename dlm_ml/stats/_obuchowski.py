"""Obuchowski's (1997) nonparametric variance of AUCs of lesions clustered within patients.

Obuchowski's estimator
----------------------
With ``I`` clusters, cluster ``i`` holding ``m_i`` cases (truth 1) and ``n_i``
controls, ``M = Σ m_i``, ``N = Σ n_i``, the AUC is the ordinary Mann–Whitney
AUC over all ``M·N`` case–control pairs (also pairs across clusters). With the
DeLong placement values ``V10(X_ij)`` (fraction of all controls that case
``ij`` outranks, ties ½) and ``V01(Y_ik)`` (fraction of all cases outranking
control ``ik``), their cluster sums ``V10_i``, ``V01_i``, and
``A_i = V10_i − m_i θ``, ``B_i = V01_i − n_i θ``::

    S10 = I10 / ((I10 − 1) M) · Σ A_i²
    S01 = I01 / ((I01 − 1) N) · Σ B_i²
    S11 = I / (I − 1) · Σ A_i B_i
    Var(θ) = S10 / M + S01 / N + 2 S11 / (M N)

``I10`` / ``I01`` count clusters holding at least one case / control. For two
scores ``r, s`` on the same lesions the cross terms ``A^r A^s``, ``B^r B^s``
and ``A^r B^s + A^s B^r`` give the covariance.

**Relation to DeLong.** When every cluster holds exactly one lesion,
``I10 = M`` and ``I01 = N``, so ``S10`` and ``S01`` are DeLong's ddof=1
variances of the placement values, and every cluster has ``m_i n_i = 0`` with
``V01_i = 0`` where ``n_i = 0`` (and ``A_i = 0`` where ``m_i = 0``), so
``S11 = 0``. The clustered variance then **equals** the DeLong variance
exactly (no n/(n−1) factor); the test-suite checks this identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import (
    ResultMixin,
    check_alpha,
    check_alternative,
    check_binary,
    check_clusters,
    check_same_length,
    check_scores,
    normal_ci,
    oriented,
)
from .roc import _delong_cov_from_placements, _placements, paired_difference

__all__: list[str] = []  # private module: dlm_ml.stats.clustered is the public home


@dataclass(frozen=True)
class ClusteredAUC(ResultMixin):
    """AUC with Obuchowski's clustered standard error.

    Attributes
    ----------
    auc : float
        Empirical AUC over all case–control pairs (ties ½).
    se : float
        Obuchowski (1997) clustered standard error.
    ci_low, ci_high : float
        ``auc ± z_{1-alpha/2} se`` clipped to [0, 1].
    n_clusters : int
        Number of clusters (patients).
    n_clusters_pos, n_clusters_neg : int
        Clusters holding at least one case / one control.
    n_pos, n_neg : int
        Number of cases / controls (lesions).
    se_unclustered : float
        DeLong SE that ignores clustering; ``(se / se_unclustered)²`` is the
        design effect of the clustering.
    alpha : float
    """

    auc: float
    se: float
    ci_low: float
    ci_high: float
    n_clusters: int
    n_clusters_pos: int
    n_clusters_neg: int
    n_pos: int
    n_neg: int
    se_unclustered: float
    alpha: float


@dataclass(frozen=True)
class ClusteredAUCDifference(ResultMixin):
    """Paired comparison of two AUCs on the same clustered lesions.

    Attributes
    ----------
    auc_a, auc_b, diff : float
        AUCs and ``auc_a - auc_b``.
    se : float
        Standard error of ``diff`` from Obuchowski's clustered covariance.
    z, p_value : float
        Wald statistic ``diff / se`` and its normal p-value for ``alternative``.
    ci_low, ci_high : float
        CI of ``diff`` (one-sided intervals for one-sided alternatives).
    alternative : str
    alpha : float
    n_clusters, n_pos, n_neg : int
    """

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    alternative: str
    alpha: float
    n_clusters: int
    n_pos: int
    n_neg: int



def _validate_clustered(truth, scores: list[tuple[str, Any]], clusters, direction):
    t = check_binary(truth, "truth", require_both=True)
    s = [check_scores(v, name) for name, v in scores]
    codes, labels = check_clusters(clusters, "clusters")
    check_same_length(truth=t, clusters=codes, **{name: v for (name, _), v in zip(scores, s)})
    so = oriented(np.vstack(s), direction)
    return t.astype(bool), so, codes, len(labels)


def _obuchowski(t: np.ndarray, s: np.ndarray, codes: np.ndarray, n_clusters: int):
    """Return (aucs, clustered covariance, DeLong covariance, cluster counts)."""
    aucs, v10, v01 = _placements(t, s)
    pos_codes, neg_codes = codes[t], codes[~t]
    m_i = np.bincount(pos_codes, minlength=n_clusters).astype(float)
    n_i = np.bincount(neg_codes, minlength=n_clusters).astype(float)
    big_m, big_n = m_i.sum(), n_i.sum()
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2 or n_clusters < 2:
        raise ValueError(
            "The clustered variance needs at least 2 clusters containing truth-1 lesions "
            f"and 2 containing truth-0 lesions; got {i10} and {i01} (of {n_clusters})."
        )
    k = s.shape[0]
    v10_i = np.vstack([np.bincount(pos_codes, weights=v10[r], minlength=n_clusters) for r in range(k)])
    v01_i = np.vstack([np.bincount(neg_codes, weights=v01[r], minlength=n_clusters) for r in range(k)])
    a = v10_i - m_i[None, :] * aucs[:, None]
    b = v01_i - n_i[None, :] * aucs[:, None]
    s10 = i10 / ((i10 - 1) * big_m) * (a @ a.T)
    s01 = i01 / ((i01 - 1) * big_n) * (b @ b.T)
    ab = a @ b.T
    s11 = n_clusters / (n_clusters - 1) * (ab + ab.T)  # symmetrised cross term
    cov = s10 / big_m + s01 / big_n + s11 / (big_m * big_n)
    cov_delong = _delong_cov_from_placements(v10, v01)
    return aucs, cov, cov_delong, (i10, i01)


def clustered_auc_covariance(
    truth, scores_2d, clusters, *, direction: str = "higher_positive"
) -> np.ndarray:
    """Obuchowski (1997) clustered covariance matrix of ``k`` AUCs.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    scores_2d : array-like, shape (k, n)
        One row per score measured on the same lesions.
    clusters : array-like, shape (n,)
        Cluster (patient) id of each lesion; any hashable labels.
    direction : {"higher_positive", "lower_positive"}

    Returns
    -------
    ndarray, shape (k, k)
    """
    arr = np.asarray(scores_2d)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"`scores_2d` must be 1-D or 2-D (k, n_obs), got shape {arr.shape}.")
    t, s, codes, n_cl = _validate_clustered(
        truth, [(f"scores_2d[{i}]", row) for i, row in enumerate(arr)], clusters, direction
    )
    return _obuchowski(t, s, codes, n_cl)[1]


def clustered_auc(
    truth, score, clusters, *, alpha: float = 0.05, direction: str = "higher_positive"
) -> ClusteredAUC:
    """AUC with Obuchowski's nonparametric clustered variance and Wald CI.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
        Lesion-level truth (pCR).
    score : array-like of float, shape (n,)
        Lesion-level score.
    clusters : array-like, shape (n,)
        Patient id of each lesion.
    alpha : float
        1 − confidence level.
    direction : {"higher_positive", "lower_positive"}

    Returns
    -------
    ClusteredAUC
        The CI is ``auc ± z_{1-alpha/2} se`` clipped to [0, 1].

    Raises
    ------
    ValueError
        Fewer than 2 clusters hold cases, or fewer than 2 hold controls.
    """
    alpha = check_alpha(alpha)
    t, s, codes, n_cl = _validate_clustered(truth, [("score", score)], clusters, direction)
    aucs, cov, cov_dl, (i10, i01) = _obuchowski(t, s, codes, n_cl)
    auc = float(aucs[0])
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    lo, hi = normal_ci(auc, se, alpha, "two-sided")
    return ClusteredAUC(
        auc=auc,
        se=se,
        ci_low=float(np.clip(lo, 0, 1)),
        ci_high=float(np.clip(hi, 0, 1)),
        n_clusters=n_cl,
        n_clusters_pos=i10,
        n_clusters_neg=i01,
        n_pos=int(t.sum()),
        n_neg=int((~t).sum()),
        se_unclustered=math.sqrt(max(float(cov_dl[0, 0]), 0.0)),
        alpha=alpha,
    )


def clustered_auc_difference(
    truth,
    score_a,
    score_b,
    clusters,
    *,
    alternative: str = "two-sided",
    alpha: float = 0.05,
    direction: str = "higher_positive",
) -> ClusteredAUCDifference:
    """Paired test of ``AUC(score_a) - AUC(score_b)`` with clustered covariance.

    ``se² = Var_a + Var_b − 2 Cov_ab`` from :func:`clustered_auc_covariance`;
    ``z = diff / se`` is referred to the standard normal (Obuchowski 1997).
    Identical curves give ``z = 0, p = 1``.

    Parameters
    ----------
    truth, score_a, score_b, clusters : array-like, shape (n,)
    alternative : {"two-sided", "greater", "less"}
        "greater": H1 is ``AUC_a > AUC_b``.
    alpha : float
    direction : {"higher_positive", "lower_positive"}

    Returns
    -------
    ClusteredAUCDifference
    """
    alternative = check_alternative(alternative)
    alpha = check_alpha(alpha)
    t, s, codes, n_cl = _validate_clustered(
        truth, [("score_a", score_a), ("score_b", score_b)], clusters, direction
    )
    aucs, cov, _, _ = _obuchowski(t, s, codes, n_cl)
    return ClusteredAUCDifference(**paired_difference(aucs, cov, alpha, alternative), n_clusters=n_cl,
                                  n_pos=int(t.sum()), n_neg=int((~t).sum()))
