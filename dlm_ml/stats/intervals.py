"""Intervals an evaluation report needs beyond the single-statistic functions.

* :func:`roc_band` — pointwise patient-bootstrap band of an ROC curve.
* :func:`cluster_bootstrap_proportion` — patient-bootstrap interval of sensitivity,
  specificity, PPV or NPV of binary calls, vectorised over replicates.
* :func:`wald_interval` — ``estimate ± z·se`` (e.g. calibration intercept and slope).

Every bootstrap here resamples **clusters (patients) with replacement**, never single
observations (lesions): lesions of one patient are not independent (docs/design.md §1). The draws
are those of :func:`dlm_ml.stats.cluster_bootstrap_ci` for the same seed, so results agree
with it replicate by replicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from ._cluster_bootstrap import BOOTSTRAP_METHODS, BootstrapCI, ClusterResamples, _finish, _replicate_counts
from ._validation import (
    ResultMixin,
    check_alpha,
    check_binary,
    check_choice,
    check_clusters,
    check_positive_int,
    check_same_length,
    check_scores,
)

__all__ = [
    "PROPORTION_METRICS",
    "ROC_BAND_FPR",
    "ROCBand",
    "cluster_bootstrap_proportion",
    "proportion_metric",
    "roc_band",
    "wald_interval",
]

#: metric -> (numerator cell, denominator cells) of the confusion table; positive = truth 1
#: and call 1 (in dlm_ml: pCR, and "called complete response").
PROPORTION_METRICS = {
    "sensitivity": ("tp", ("tp", "fn")),
    "specificity": ("tn", ("tn", "fp")),
    "ppv": ("tp", ("tp", "fp")),
    "npv": ("tn", ("tn", "fn")),
}
_CELLS = ("tp", "fp", "fn", "tn")
#: False-positive rates at which :func:`roc_band` reads each replicate's curve.
ROC_BAND_FPR = np.linspace(0.0, 1.0, 101)


def _cells(truth: np.ndarray, call: np.ndarray) -> dict[str, np.ndarray]:
    t, c = truth.astype(bool), call.astype(bool)
    return {"tp": t & c, "fp": ~t & c, "fn": t & ~c, "tn": ~t & ~c}


def proportion_metric(name: str):
    """``metric(truth, call) -> float`` for one of :data:`PROPORTION_METRICS`; NaN when its
    denominator is 0 (e.g. PPV with no positive call). Usable with ``cluster_bootstrap_ci``."""
    num_cell, den_cells = PROPORTION_METRICS[check_choice(name, "metric", tuple(PROPORTION_METRICS))]

    def metric(truth, call) -> float:
        cells = _cells(np.asarray(truth), np.asarray(call))
        den = sum(int(cells[c].sum()) for c in den_cells)
        return int(cells[num_cell].sum()) / den if den else float("nan")

    metric.__name__ = name
    return metric


def cluster_bootstrap_proportion(
    truth,
    call,
    clusters,
    *,
    metric: str,
    n_boot: int = 2000,
    alpha: float = 0.05,
    method: str = "percentile",
    seed: int | np.random.Generator | None = 0,
    resamples: ClusterResamples | None = None,
) -> BootstrapCI:
    """Patient-bootstrap CI of a proportion of binary calls.

    Each replicate draws ``I`` patients with replacement from the ``I`` patients; a patient
    drawn ``k`` times contributes its confusion-table cells ``k`` times. The replicate values
    equal those of ``cluster_bootstrap_ci(proportion_metric(metric), clusters, truth, call,
    seed=seed)``, computed as one matrix product instead of a loop.

    Parameters
    ----------
    truth, call : array-like of 0/1, shape (n,)
    clusters : array-like, shape (n,) — patient of each observation.
    metric : {"sensitivity", "specificity", "ppv", "npv"}
    n_boot, alpha, method, seed, resamples : as :func:`dlm_ml.stats.cluster_bootstrap_ci`.

    Returns
    -------
    BootstrapCI
        Replicates whose denominator is 0 are counted in ``n_failed``.

    Raises
    ------
    ValueError
        When the metric is undefined on the full data (denominator 0) or fewer than 2
        replicates are defined.
    """
    num_cell, den_cells = PROPORTION_METRICS[check_choice(metric, "metric", tuple(PROPORTION_METRICS))]
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    alpha = check_alpha(alpha)
    method = check_choice(method, "method", BOOTSTRAP_METHODS)
    t, c = check_binary(truth, "truth"), check_binary(call, "call")
    codes, labels = check_clusters(clusters, "clusters")
    check_same_length(truth=t, call=c, clusters=codes)
    n_cl = len(labels)
    # (I, 4) confusion cells per patient; a replicate's table is multiplicities @ cells.
    cells = _cells(t, c)
    per_cluster = np.column_stack([np.bincount(codes, weights=cells[k], minlength=n_cl) for k in _CELLS])
    num_col, den_cols = _CELLS.index(num_cell), [_CELLS.index(k) for k in den_cells]

    def values(weights: np.ndarray) -> np.ndarray:
        table = weights @ per_cluster
        den = table[:, den_cols].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, table[:, num_col] / np.where(den > 0, den, 1), np.nan)

    estimate = float(values(np.ones((1, n_cl)))[0])
    if not np.isfinite(estimate):
        raise ValueError(f"{metric} is undefined on these data: its denominator "
                         f"({' + '.join(den_cells)}) is 0.")
    counts = _replicate_counts(resamples, clusters, n_cl, n_boot, seed)
    n_boot = counts.shape[0]
    reps = values(counts.astype(float))

    def jackknife() -> np.ndarray:
        return values(1.0 - np.eye(n_cl))  # row i: patient i left out

    return _finish(estimate, reps, n_boot, alpha, method, n_cl, jackknife)


@dataclass(frozen=True)
class ROCBand(ResultMixin):
    """Pointwise patient-bootstrap band of an ROC curve (vertical averaging).

    Attributes
    ----------
    fpr : ndarray [k] — false-positive rates of the grid.
    tpr_low, tpr_high : ndarray [k] — percentile interval of the true-positive rate at each.
    n_boot : int — replicates drawn; n_failed : int — those with one class only (skipped).
    n_clusters : int — patients resampled; alpha : float.
    """

    fpr: np.ndarray = field(repr=False)
    tpr_low: np.ndarray = field(repr=False)
    tpr_high: np.ndarray = field(repr=False)
    n_boot: int
    n_failed: int
    n_clusters: int
    alpha: float


def roc_band(truth, score, clusters, *, n_boot: int = 2000, alpha: float = 0.05,
             seed: int | np.random.Generator | None = 0, fpr=ROC_BAND_FPR,
             resamples: ClusterResamples | None = None) -> ROCBand:
    """Pointwise patient-bootstrap band of the ROC curve of ``score``.

    Each replicate resamples patients with replacement (all lesions of a drawn patient, as
    often as it is drawn); its true-positive rate is read at the fixed false-positive rates
    ``fpr`` (linear interpolation between vertices, the upper value at vertical steps); the
    band is the percentile interval at each rate. ``resamples``: as
    :func:`dlm_ml.stats.cluster_bootstrap_auc`.

    The replicate curves come from patient multiplicities as lesion weights, all at once:
    lesions are sorted by score once, and a replicate's vertices are the cumulative weighted
    true and false positives at the ends of the tie runs. A lesion of an undrawn patient
    (weight 0) only repeats a vertex, which changes no curve.

    Raises
    ------
    ValueError
        When fewer than 2 replicates hold both classes.
    """
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    alpha = check_alpha(alpha)
    t = check_binary(truth, "truth", require_both=True).astype(bool)
    s = check_scores(score, "score")
    codes, labels = check_clusters(clusters, "clusters")
    check_same_length(truth=t, score=s, clusters=codes)
    grid = np.asarray(fpr, dtype=float)
    counts = _replicate_counts(resamples, clusters, len(labels), n_boot, seed).astype(float)
    order = np.argsort(-s, kind="mergesort")
    last = np.r_[np.flatnonzero(np.diff(s[order]) != 0), s.size - 1]  # last lesion of each tie run
    weights = counts[:, codes[order]]  # [n_boot, n lesions], by decreasing score
    positives = np.where(t[order], weights, 0.0)
    tps = np.cumsum(positives, axis=1)[:, last]
    fps = np.cumsum(weights - positives, axis=1)[:, last]
    n_pos, n_neg = tps[:, -1], fps[:, -1]
    both = (n_pos > 0) & (n_neg > 0)
    if both.sum() < 2:
        raise ValueError(f"only {int(both.sum())} of {counts.shape[0]} bootstrap replicates held both classes")
    zero = np.zeros((int(both.sum()), 1))
    tpr = np.hstack([zero, tps[both] / n_pos[both, None]])
    fpr_vertices = np.hstack([zero, fps[both] / n_neg[both, None]])
    tprs = np.vstack([np.interp(grid, x, y) for x, y in zip(fpr_vertices, tpr)])
    low, high = np.quantile(tprs, [alpha / 2, 1 - alpha / 2], axis=0)
    return ROCBand(fpr=grid, tpr_low=low, tpr_high=high, n_boot=counts.shape[0],
                   n_failed=int((~both).sum()), n_clusters=len(labels), alpha=alpha)


def wald_interval(estimate: float, se: float, *, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Wald interval ``estimate ± z_{1-alpha/2}·se`` (NaN when ``se`` is NaN)."""
    q = norm.ppf(1 - check_alpha(alpha) / 2)
    return float(estimate - q * se), float(estimate + q * se)
