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
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri, stdtrit  # the normal and t quantiles, without scipy.stats' per-call overhead

from ._validation import (
    ResultMixin,
    check_alpha,
    check_alternative,
    check_binary,
    check_clusters,
    check_same_length,
    check_scores,
    oriented,
)
from .roc import _delong_cov_from_placements, _placements, paired_difference

__all__: list[str] = []  # private module: dlm_ml.stats.clustered is the public home

# The intervals :func:`clustered_auc` offers, by ``ci_method``, with the words reports print.
# "logit-t" is the default: in the null simulation of benchmarks/stats_null_simulation.py it
# keeps nominal coverage down to 10-15 patients (the plain Wald interval covers 89-92 %
# there), stays inside (0, 1) near AUC 1, and is no wider than Wald at 100 patients.
# "normal" is the Wald interval of Obuchowski (1997) and of R's pROC for DeLong's variance.
CLUSTERED_AUC_CI_METHODS: dict[str, str] = {
    "logit-t": "logit-scale Wald, t quantile with patients - 1 df",
    "logit": "logit-scale Wald, normal quantile",
    "t": "Wald, t quantile with patients - 1 df",
    "normal": "Wald, normal quantile",
}
DEFAULT_CLUSTERED_AUC_CI = "logit-t"
_T_QUANTILE = ("logit-t", "t")  # methods whose quantile is Student's t on patients - 1 df


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
        The ``1 - alpha`` interval of ``ci_method`` (see :func:`clustered_auc_ci`), inside [0, 1].
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
    ci_method : str
        Which interval ``ci_low, ci_high`` are: a key of ``CLUSTERED_AUC_CI_METHODS``.
    ci_df : float or None
        Degrees of freedom of the t quantile (``n_clusters - 1``); None for a normal quantile.
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
    ci_method: str
    ci_df: float | None

    @property
    def ci_description(self) -> str:
        """The interval in words, e.g. ``logit-scale Wald, t quantile with patients - 1 df (24 df)``."""
        return describe_clustered_auc_ci(self.ci_method, self.ci_df)


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


def check_ci_method(ci_method: Any) -> str:
    """``ci_method`` if it names an interval of :data:`CLUSTERED_AUC_CI_METHODS`, else ValueError."""
    if not isinstance(ci_method, str) or ci_method not in CLUSTERED_AUC_CI_METHODS:
        offered = "; ".join(f"{name!r} ({text})" for name, text in CLUSTERED_AUC_CI_METHODS.items())
        raise ValueError(f"`ci_method` must be one of: {offered}; got {ci_method!r}. The default "
                         f"{DEFAULT_CLUSTERED_AUC_CI!r} keeps nominal coverage with few patients; 'normal' "
                         "is the Wald interval of Obuchowski (1997).")
    return ci_method


def describe_clustered_auc_ci(ci_method: str, ci_df: float | None = None) -> str:
    """The interval ``ci_method`` in words, with its degrees of freedom when given."""
    text = CLUSTERED_AUC_CI_METHODS[check_ci_method(ci_method)]
    return text if ci_df is None or ci_method not in _T_QUANTILE else f"{text} ({ci_df:g} df)"


def clustered_auc_ci(
    auc: float, se: float, n_clusters: int, *, alpha: float = 0.05, ci_method: str = DEFAULT_CLUSTERED_AUC_CI
) -> tuple[float, float, float | None]:
    """Two-sided ``1 - alpha`` interval of an AUC from its (clustered) standard error.

    With ``q`` the ``1 - alpha/2`` quantile of the standard normal ("normal", "logit") or of
    Student's t with ``n_clusters - 1`` degrees of freedom ("t", "logit-t"):

    * "normal", "t": ``auc ± q se``, clipped to [0, 1];
    * "logit", "logit-t": ``expit(logit(auc) ± q se / (auc (1 - auc)))`` (delta method on the
      logit scale), inside (0, 1) by construction and asymmetric near 0 or 1.

    The t quantile accounts for the variance being estimated from ``n_clusters`` patients
    (Obuchowski's S10, S01, S11 are sums over patients). An AUC of exactly 0 or 1 has
    ``se = 0`` (no case-control pair is ranked the other way) and the interval collapses to
    the point; a RuntimeWarning says so, since the point does not express the uncertainty.

    Parameters
    ----------
    auc : float
        Estimate in [0, 1].
    se : float
        Its standard error (>= 0).
    n_clusters : int
        Number of patients (>= 2) the variance was estimated from.
    alpha : float
    ci_method : {"logit-t", "logit", "t", "normal"}

    Returns
    -------
    (ci_low, ci_high, ci_df)
        ``ci_df`` = ``n_clusters - 1`` for a t quantile, else None.
    """
    ci_method = check_ci_method(ci_method)
    alpha = check_alpha(alpha)
    if not (0.0 <= auc <= 1.0 and se >= 0.0 and math.isfinite(se)):
        raise ValueError(f"clustered_auc_ci needs an AUC in [0, 1] and a finite SE >= 0; got {auc!r}, {se!r}.")
    if n_clusters < 2:
        raise ValueError(f"clustered_auc_ci needs at least 2 patients (clusters); got {n_clusters}.")
    df = float(n_clusters - 1) if ci_method in _T_QUANTILE else None
    q = float(ndtri(1.0 - alpha / 2.0) if df is None else stdtrit(df, 1.0 - alpha / 2.0))
    if se == 0.0 or auc in (0.0, 1.0):
        why = ("every case-control pair is ranked the same way" if auc in (0.0, 1.0)
               else "the clustered variance estimate is 0")
        warnings.warn(f"AUC = {auc:g} with standard error {se:g}: {why}, so the interval collapses to the point "
                      f"and does not show the uncertainty of {n_clusters} patients.", RuntimeWarning, stacklevel=3)
        return auc, auc, df
    if ci_method.startswith("logit"):
        centre, half = math.log(auc / (1.0 - auc)), q * se / (auc * (1.0 - auc))
        return _expit(centre - half), _expit(centre + half), df
    return max(auc - q * se, 0.0), min(auc + q * se, 1.0), df


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def clustered_auc(
    truth,
    score,
    clusters,
    *,
    alpha: float = 0.05,
    direction: str = "higher_positive",
    ci_method: str = DEFAULT_CLUSTERED_AUC_CI,
) -> ClusteredAUC:
    """AUC with Obuchowski's nonparametric clustered variance and its interval.

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
    ci_method : {"logit-t", "logit", "t", "normal"}
        The interval (:func:`clustered_auc_ci`). Default "logit-t": logit-scale Wald with
        the t quantile on patients − 1 df, near-nominal coverage from about 10 patients on.
        "normal" is Obuchowski's Wald interval ``auc ± z se`` (with one lesion per patient it
        equals pROC's DeLong interval).

    Returns
    -------
    ClusteredAUC
        ``ci_method`` and ``ci_df`` record which interval ``ci_low, ci_high`` are.

    Raises
    ------
    ValueError
        Fewer than 2 clusters hold cases, or fewer than 2 hold controls; an unknown ``ci_method``.
    """
    alpha = check_alpha(alpha)
    ci_method = check_ci_method(ci_method)
    t, s, codes, n_cl = _validate_clustered(truth, [("score", score)], clusters, direction)
    aucs, cov, cov_dl, (i10, i01) = _obuchowski(t, s, codes, n_cl)
    auc = float(aucs[0])
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    lo, hi, df = clustered_auc_ci(auc, se, n_cl, alpha=alpha, ci_method=ci_method)
    return ClusteredAUC(
        auc=auc,
        se=se,
        ci_low=float(lo),
        ci_high=float(hi),
        n_clusters=n_cl,
        n_clusters_pos=i10,
        n_clusters_neg=i01,
        n_pos=int(t.sum()),
        n_neg=int((~t).sum()),
        se_unclustered=math.sqrt(max(float(cov_dl[0, 0]), 0.0)),
        alpha=alpha,
        ci_method=ci_method,
        ci_df=df,
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
