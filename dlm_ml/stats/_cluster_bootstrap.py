"""Patient-level (cluster) bootstrap confidence intervals.

Whole clusters (patients) are drawn with replacement, so the lesions of one patient
stay together in every resample. :func:`cluster_bootstrap_ci` evaluates any metric on
each resample; :func:`cluster_bootstrap_auc` gets the same replicates of the AUC for all
resamples at once from cluster multiplicities used as lesion weights. Intervals are
percentile or BCa (acceleration from the leave-one-cluster-out jackknife).

At least 2 clusters are needed: with one, every resample is that cluster and the
interval has zero width. That is only the mathematical minimum; the bootstrap
distribution of a handful of patients is coarse and its intervals are too narrow
(they cannot reflect patients that were not sampled), so intervals from very few
patients are unreliable.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from ._obuchowski import _validate_clustered
from ._validation import ResultMixin, check_alpha, check_choice, check_clusters, check_positive_int
from .roc import roc_auc

__all__: list[str] = []  # private module: dlm_ml.stats.clustered is the public home

BOOTSTRAP_METHODS = ("percentile", "bca")
MIN_CLUSTERS = 2


def _check_enough_clusters(n_clusters: int) -> None:
    """Refuse a bootstrap of fewer than ``MIN_CLUSTERS`` clusters (a zero-width interval)."""
    if n_clusters < MIN_CLUSTERS:
        raise ValueError(
            f"The patient bootstrap got {n_clusters} patient(s) (clusters); it needs at least "
            f"{MIN_CLUSTERS} patients: with one, every resample is that patient and the interval "
            "has zero width."
        )


@dataclass(frozen=True)
class BootstrapCI(ResultMixin):
    """Cluster (patient) bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        The metric on the original data.
    ci_low, ci_high : float
        Interval at level ``1 - alpha``.
    n_boot : int
        Replicates drawn (including failed ones).
    method : str
        "percentile" or "bca".
    n_failed : int
        Replicates where the metric was undefined (e.g. a resample with one
        class only) — excluded from the interval and reported here, never
        silently dropped.
    alpha : float
    se : float
        Standard deviation (ddof=1) of the valid replicates.
    n_clusters : int
        Number of clusters resampled.
    bias_correction, acceleration : float
        BCa constants ``z0`` and ``a`` (NaN for the percentile method).
    replicates : ndarray
        The valid replicate values (not in ``to_dict()``).
    """

    estimate: float
    ci_low: float
    ci_high: float
    n_boot: int
    method: str
    n_failed: int
    alpha: float
    se: float
    n_clusters: int
    bias_correction: float = float("nan")
    acceleration: float = float("nan")
    replicates: np.ndarray = field(
        default_factory=lambda: np.empty(0), repr=False, compare=False, metadata={"to_dict": False}
    )


@dataclass(frozen=True)
class ClusterResamples:
    """Patient (cluster) resamples drawn once, for every bootstrapped quantity of one analysis.

    Passed as ``resamples`` to :func:`cluster_bootstrap_auc`, :func:`cluster_bootstrap_ci`,
    :func:`dlm_ml.stats.cluster_bootstrap_proportion` and :func:`dlm_ml.stats.roc_band`, it
    replaces their own draws: replicate ``b`` of every quantity is then computed on the same
    resample of patients, so the quantities' replicates are paired. A quantity on the lesions
    of some patients only (e.g. those one reader read) takes the multiplicities of its patients:
    the statistic of the whole resample restricted to those lesions.

    Attributes
    ----------
    labels : ndarray [I]
        The distinct cluster labels resampled, sorted.
    counts : int ndarray [n_boot, I]
        Multiplicity of each cluster in each resample (each row sums to ``I``).
    """

    labels: np.ndarray
    counts: np.ndarray

    @property
    def n_boot(self) -> int:
        return int(self.counts.shape[0])

    def weights_for(self, labels) -> np.ndarray:
        """[n_boot, len(labels)] multiplicities of ``labels`` (drawn clusters), in their order."""
        labels = np.asarray(labels)
        positions = pd.Index(self.labels).get_indexer(labels)
        if (positions < 0).any():
            missing = labels[positions < 0][:5].tolist()
            raise ValueError(f"cluster(s) {missing} not among the {self.labels.size} clusters resampled; "
                             "draw the resamples over every cluster of the analysis")
        return self.counts[:, positions]


def draw_cluster_resamples(clusters, *, n_boot: int = 2000,
                           seed: int | np.random.Generator | None = 0) -> ClusterResamples:
    """Draw ``n_boot`` resamples of the distinct clusters of ``clusters`` (``I`` draws with
    replacement from the ``I`` clusters), the draws every bootstrap here makes for ``seed``."""
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    _, labels = check_clusters(clusters, "clusters")
    _check_enough_clusters(len(labels))
    return ClusterResamples(labels, _draw_cluster_counts(np.random.default_rng(seed), len(labels), n_boot))


def _replicate_counts(resamples: ClusterResamples | None, clusters, n_clusters: int, n_boot: int,
                      seed) -> np.ndarray:
    """[n_boot', I] multiplicities of the ``I`` clusters of ``clusters`` (in code order): the
    shared ``resamples`` when given (n_boot' its rows), else ``n_boot`` fresh draws from ``seed``."""
    if resamples is None:
        return _draw_cluster_counts(np.random.default_rng(seed), n_clusters, n_boot)
    return resamples.weights_for(check_clusters(clusters, "clusters")[1])


def _draw_cluster_counts(rng: np.random.Generator, n_clusters: int, n_boot: int) -> np.ndarray:
    """(n_boot, I) multiplicity of each cluster in each resample.

    The draws are ``rng.integers(0, I, size=(n_boot, I))``; both the generic and
    the vectorised bootstrap use exactly these draws, so they agree for a seed.
    """
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = draws + n_clusters * np.arange(n_boot)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)


class _WeightedAUC:
    """AUC of many weightings of one dataset at once.

    With lesion weights ``w`` (cluster multiplicities), the resampled AUC is
    ``Σ_{case j, control k} w_j w_k ψ(x_j, y_k) / (Σ w_cases · Σ w_controls)``:
    exactly the AUC of the resample with duplicated lesions. Lesions are sorted
    once by score and grouped into tie levels; for every weighting the weighted
    control counts below each level come from one cumulative sum, so each
    replicate costs O(n) array work and no Python loop.
    """

    def __init__(self, truth: np.ndarray, score: np.ndarray, codes: np.ndarray):
        order = np.argsort(score, kind="mergesort")
        s = score[order]
        self.codes = codes[order]
        self.is_pos = truth[order].astype(bool)
        starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
        self.starts = None if starts.size == s.size else starts  # None: no ties

    def __call__(self, cluster_weights: np.ndarray, chunk_cells: int = 2_000_000) -> np.ndarray:
        n_rep = cluster_weights.shape[0]
        out = np.empty(n_rep)
        step = max(1, chunk_cells // max(1, self.codes.size))
        pos_idx = self.is_pos
        for lo in range(0, n_rep, step):  # chunks bound memory, not a per-replicate loop
            w = cluster_weights[lo : lo + step][:, self.codes].astype(float)
            wpos = np.where(pos_idx, w, 0.0)
            wneg = w - wpos
            if self.starts is not None:
                wpos = np.add.reduceat(wpos, self.starts, axis=1)
                wneg = np.add.reduceat(wneg, self.starts, axis=1)
            neg_below = np.cumsum(wneg, axis=1) - wneg
            num = np.einsum("ij,ij->i", wpos, neg_below + 0.5 * wneg)
            den = wpos.sum(axis=1) * wneg.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[lo : lo + step] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        return out


def _interval(
    reps: np.ndarray,
    estimate: float,
    alpha: float,
    method: str,
    jackknife: Callable[[], np.ndarray] | None,
) -> tuple[float, float, float, float]:
    """(low, high, z0, a) from valid replicates."""
    if method == "percentile":
        lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi), float("nan"), float("nan")
    # BCa (Efron 1987). Bias correction from the share of replicates below the
    # estimate, counting ties one half: AUC replicates are discrete and often tie
    # with the estimate, and the strict "<" rule would bias z0.
    prop = (np.sum(reps < estimate) + 0.5 * np.sum(reps == estimate)) / reps.size
    if prop <= 0.0 or prop >= 1.0:
        warnings.warn(
            "BCa interval undefined: all bootstrap replicates lie on one side of the "
            "estimate; returning NaN bounds.",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan"), float("nan"), float("nan"), float("nan")
    z0 = float(norm.ppf(prop))
    jack = jackknife()
    jack = jack[np.isfinite(jack)]  # leaving out a cluster can remove a whole class
    if jack.size < 2:
        warnings.warn(
            "Fewer than 2 leave-one-cluster-out jackknife values are defined; BCa "
            "acceleration set to 0.",
            RuntimeWarning,
            stacklevel=3,
        )
        jack = np.zeros(2)
    d = jack.mean() - jack
    den = 6.0 * np.sum(d**2) ** 1.5
    a = float(np.sum(d**3) / den) if den > 0 else 0.0
    zq = norm.ppf([alpha / 2, 1 - alpha / 2])
    adj = norm.cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq)))
    lo, hi = np.quantile(reps, adj)
    return float(lo), float(hi), z0, a


def _finish(
    estimate: float,
    reps: np.ndarray,
    n_boot: int,
    alpha: float,
    method: str,
    n_clusters: int,
    jackknife: Callable[[], np.ndarray],
) -> BootstrapCI:
    _check_enough_clusters(n_clusters)
    ok = np.isfinite(reps)
    n_failed = int((~ok).sum())
    valid = reps[ok]
    if valid.size < 2:
        raise ValueError(
            f"Only {valid.size} of {n_boot} bootstrap replicates gave a defined metric; "
            "too few clusters of one class to bootstrap."
        )
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n_boot} bootstrap replicates were undefined (e.g. one class "
            "only) and were excluded; see BootstrapCI.n_failed.",
            RuntimeWarning,
            stacklevel=3,
        )
    lo, hi, z0, a = _interval(valid, estimate, alpha, method, jackknife)
    return BootstrapCI(
        estimate=float(estimate),
        ci_low=lo,
        ci_high=hi,
        n_boot=n_boot,
        method=method,
        n_failed=n_failed,
        alpha=alpha,
        se=float(np.std(valid, ddof=1)),
        n_clusters=n_clusters,
        bias_correction=z0,
        acceleration=a,
        replicates=valid,
    )


def cluster_bootstrap_auc(
    truth,
    score,
    clusters,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
    direction: str = "higher_positive",
    resamples: ClusterResamples | None = None,
) -> BootstrapCI:
    """Patient-level bootstrap CI of the AUC, vectorised over replicates.

    Clusters are drawn with replacement (``I`` draws from ``I`` clusters); each
    replicate's AUC is computed from cluster multiplicities as weights, for all
    replicates at once (see ``_WeightedAUC``). Gives the same replicates as
    ``cluster_bootstrap_ci(roc_auc-like metric, clusters, truth, score,
    seed=seed)``.

    Parameters
    ----------
    truth, score, clusters : array-like, shape (n,)
    n_boot : int
        Number of replicates.
    alpha : float
        1 − confidence level.
    method : {"percentile", "bca"}
        BCa takes its acceleration from the leave-one-cluster-out jackknife.
    seed : int, numpy Generator or None
        Passed to ``numpy.random.default_rng``.
    direction : {"higher_positive", "lower_positive"}
    resamples : ClusterResamples, optional
        Resamples drawn once for a whole analysis (:func:`draw_cluster_resamples`)
        instead of draws from ``seed``; their rows are the replicates (``n_boot``
        is then theirs).

    Returns
    -------
    BootstrapCI
        Replicates whose resample holds one class only are counted in
        ``n_failed`` and excluded.

    Raises
    ------
    ValueError
        With fewer than 2 clusters (see the module notes: intervals from very
        few patients are unreliable even when computed).
    """
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    alpha = check_alpha(alpha)
    method = check_choice(method, "method", BOOTSTRAP_METHODS)
    t, s, codes, n_cl = _validate_clustered(truth, [("score", score)], clusters, direction)
    _check_enough_clusters(n_cl)
    s = s[0]
    wauc = _WeightedAUC(t, s, codes)
    estimate = float(wauc(np.ones((1, n_cl)))[0])
    counts = _replicate_counts(resamples, clusters, n_cl, n_boot, seed)
    n_boot = counts.shape[0]
    reps = wauc(counts)

    def jackknife() -> np.ndarray:
        return wauc(1.0 - np.eye(n_cl))  # row i: cluster i left out

    return _finish(estimate, reps, n_boot, alpha, method, n_cl, jackknife)


_UNDEFINED_ERRORS = (ValueError, ZeroDivisionError, FloatingPointError)


def cluster_bootstrap_ci(
    metric: Callable[..., float],
    clusters,
    *arrays,
    n_boot: int = 2000,
    alpha: float = 0.05,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
    resamples: ClusterResamples | None = None,
) -> BootstrapCI:
    """Patient-level (cluster) bootstrap CI of any scalar metric.

    Each replicate draws ``I`` clusters with replacement from the ``I``
    clusters and concatenates all their lesions (a cluster drawn twice
    contributes its lesions twice), then evaluates ``metric(*resampled_arrays)``.

    Parameters
    ----------
    metric : callable
        ``metric(*arrays) -> float``. A replicate is *failed* when the metric
        raises ``ValueError``/``ZeroDivisionError``/``FloatingPointError`` or
        returns a non-finite value (e.g. an AUC of a one-class resample). Failed
        replicates are excluded and counted in ``n_failed`` (with a warning).
        :func:`dlm_ml.stats.roc_auc` called with two arrays is dispatched to
        the vectorised :func:`cluster_bootstrap_auc`.
    clusters : array-like, shape (n,)
        Cluster (patient) id of each observation.
    *arrays : array-like, each with first dimension n
        Data passed to ``metric`` (e.g. ``truth, score``).
    n_boot : int
    alpha : float
    method : {"percentile", "bca"}
        BCa acceleration from the leave-one-cluster-out jackknife.
    seed : int, numpy Generator or None
    resamples : ClusterResamples, optional
        As :func:`cluster_bootstrap_auc`.

    Returns
    -------
    BootstrapCI

    Raises
    ------
    ValueError
        If there are fewer than 2 clusters (every resample would be the same
        patient; intervals from very few patients are unreliable even from 2),
        the metric fails on the full data, or fewer than 2 replicates are
        defined.
    """
    if not callable(metric):
        raise ValueError(f"`metric` must be callable, got {type(metric).__name__}.")
    if not arrays:
        raise ValueError("Pass at least one data array after `clusters`.")
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    alpha = check_alpha(alpha)
    method = check_choice(method, "method", BOOTSTRAP_METHODS)
    if metric is roc_auc and len(arrays) == 2:
        return cluster_bootstrap_auc(
            arrays[0], arrays[1], clusters, n_boot=n_boot, alpha=alpha, method=method, seed=seed,
            resamples=resamples,
        )
    codes, labels = check_clusters(clusters, "clusters")
    data = [np.asarray(a) for a in arrays]
    for i, a in enumerate(data):
        if a.ndim == 0 or a.shape[0] != codes.size:
            raise ValueError(
                f"`arrays[{i}]` must have first dimension {codes.size} (one row per "
                f"cluster label), got shape {a.shape}."
            )
    n_cl = len(labels)
    _check_enough_clusters(n_cl)
    order = np.argsort(codes, kind="mergesort")
    members = np.split(order, np.cumsum(np.bincount(codes, minlength=n_cl))[:-1])

    estimate = float(metric(*data))
    if not np.isfinite(estimate):
        raise ValueError(f"`metric` is not finite on the full data ({estimate}).")

    def evaluate(idx: np.ndarray) -> float:
        try:
            value = float(metric(*(a[idx] for a in data)))
        except _UNDEFINED_ERRORS:
            return float("nan")
        return value if np.isfinite(value) else float("nan")

    counts = _replicate_counts(resamples, clusters, n_cl, n_boot, seed)
    n_boot = counts.shape[0]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        # Lesions of each drawn cluster, repeated by its multiplicity.
        reps[b] = evaluate(np.concatenate([np.tile(members[c], k) for c, k in enumerate(counts[b]) if k]))

    def jackknife() -> np.ndarray:
        return np.array([evaluate(np.concatenate(members[:i] + members[i + 1 :])) for i in range(n_cl)])

    return _finish(estimate, reps, n_boot, alpha, method, n_cl, jackknife)
