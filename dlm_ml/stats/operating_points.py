"""Binary operating points: proportions with CIs, diagnostic metrics, thresholds, McNemar.

In dlm_ml the positive class is pCR (truth 1) and a positive *call* means
"read as complete response". Sensitivity is then the share of pCR lesions
called complete response; NPV is the share of lesions called "not complete
response" that truly hold viable tumour, etc. — the functions are generic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, binomtest, chi2, norm

from ._validation import (
    ResultMixin,
    check_alpha,
    check_binary,
    check_choice,
    check_same_length,
    check_scores,
)

__all__ = [
    "ProportionCI",
    "ConfusionCounts",
    "DiagnosticMetrics",
    "OperatingThreshold",
    "McNemarTest",
    "proportion_ci",
    "confusion_counts",
    "diagnostic_metrics",
    "threshold_for_specificity",
    "threshold_for_sensitivity",
    "mcnemar_test",
    "mcnemar_from_table",
]

PROPORTION_METHODS = ("wilson", "clopper-pearson")


# --------------------------------------------------------------------------- proportions
@dataclass(frozen=True)
class ProportionCI(ResultMixin):
    """A proportion with its confidence interval.

    Attributes
    ----------
    estimate : float
        ``successes / n``; NaN when ``n == 0`` (e.g. PPV with no positive call).
    ci_low, ci_high : float
        Interval at level ``1 - alpha`` (NaN when ``n == 0``).
    successes, n : int
    method : str
        "wilson" (score interval, no continuity correction) or
        "clopper-pearson" (exact, as R's ``binom.test``).
    alpha : float
    """

    estimate: float
    ci_low: float
    ci_high: float
    successes: int
    n: int
    method: str
    alpha: float


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return int(value)


def proportion_ci(
    successes: int, n: int, *, method: str = "wilson", alpha: float = 0.05
) -> ProportionCI:
    """Confidence interval of a binomial proportion.

    Parameters
    ----------
    successes, n : int
        ``0 <= successes <= n``. ``n == 0`` gives NaN estimate and bounds
        (the proportion is undefined), so that metrics such as PPV with no
        positive call stay visible instead of raising.
    method : {"wilson", "clopper-pearson"}
        Wilson score interval without continuity correction, or the exact
        Clopper–Pearson interval (beta quantiles; bound 0 at 0 successes and 1
        at n successes).
    alpha : float
        1 − confidence level.

    Returns
    -------
    ProportionCI
    """
    x = _count(successes, "successes")
    n = _count(n, "n")
    if x > n:
        raise ValueError(f"`successes` ({x}) cannot exceed `n` ({n}).")
    method = check_choice(method, "method", PROPORTION_METHODS)
    alpha = check_alpha(alpha)
    if n == 0:
        nan = float("nan")
        return ProportionCI(nan, nan, nan, 0, 0, method, alpha)
    p = x / n
    if method == "wilson":
        z = norm.ppf(1 - alpha / 2)
        z2 = z * z
        centre = (x + z2 / 2) / (n + z2)
        half = z / (n + z2) * math.sqrt(x * (n - x) / n + z2 / 4)
        # At x = 0 (x = n) the bound is exactly 0 (1); set it so rounding
        # cannot leave 1e-18 or 0.9999999999999999.
        lo = 0.0 if x == 0 else max(0.0, centre - half)
        hi = 1.0 if x == n else min(1.0, centre + half)
    else:
        lo = 0.0 if x == 0 else float(beta.ppf(alpha / 2, x, n - x + 1))
        hi = 1.0 if x == n else float(beta.ppf(1 - alpha / 2, x + 1, n - x))
    return ProportionCI(float(p), float(lo), float(hi), x, n, method, alpha)


# --------------------------------------------------------------------------- confusion
@dataclass(frozen=True)
class ConfusionCounts(ResultMixin):
    """2 × 2 counts of binary calls against truth (positive = 1)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def confusion_counts(truth, call) -> ConfusionCounts:
    """Count true/false positives/negatives.

    Parameters
    ----------
    truth, call : array-like of 0/1, shape (n,)
        Neither needs to contain both classes.

    Returns
    -------
    ConfusionCounts
    """
    t = check_binary(truth, "truth").astype(bool)
    c = check_binary(call, "call").astype(bool)
    check_same_length(truth=t, call=c)
    return ConfusionCounts(
        tp=int(np.sum(t & c)),
        fp=int(np.sum(~t & c)),
        fn=int(np.sum(t & ~c)),
        tn=int(np.sum(~t & ~c)),
    )


@dataclass(frozen=True)
class DiagnosticMetrics(ResultMixin):
    """Sensitivity, specificity, PPV, NPV and accuracy, each with a CI.

    Each metric is a :class:`ProportionCI` holding its numerator and
    denominator: sensitivity = TP/(TP+FN), specificity = TN/(TN+FP),
    PPV = TP/(TP+FP), NPV = TN/(TN+FN), accuracy = (TP+TN)/n. Lesions are
    treated as independent; for a patient-level interval use
    :func:`dlm_ml.stats.cluster_bootstrap_ci`.
    """

    sensitivity: ProportionCI
    specificity: ProportionCI
    ppv: ProportionCI
    npv: ProportionCI
    accuracy: ProportionCI
    counts: ConfusionCounts
    method: str
    alpha: float


def diagnostic_metrics(
    truth, call, *, alpha: float = 0.05, method: str = "wilson"
) -> DiagnosticMetrics:
    """Sensitivity, specificity, PPV and NPV of binary calls with CIs.

    Parameters
    ----------
    truth, call : array-like of 0/1, shape (n,)
    alpha : float
    method : {"wilson", "clopper-pearson"}

    Returns
    -------
    DiagnosticMetrics
        A metric whose denominator is 0 (e.g. PPV when nothing is called
        positive) has NaN estimate and bounds.
    """
    cc = confusion_counts(truth, call)
    kw = dict(method=method, alpha=alpha)
    return DiagnosticMetrics(
        sensitivity=proportion_ci(cc.tp, cc.tp + cc.fn, **kw),
        specificity=proportion_ci(cc.tn, cc.tn + cc.fp, **kw),
        ppv=proportion_ci(cc.tp, cc.tp + cc.fp, **kw),
        npv=proportion_ci(cc.tn, cc.tn + cc.fn, **kw),
        accuracy=proportion_ci(cc.tp + cc.tn, cc.n, **kw),
        counts=cc,
        method=method,
        alpha=float(alpha),
    )


# --------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class OperatingThreshold(ResultMixin):
    """A decision threshold chosen on (training) data.

    Attributes
    ----------
    threshold : float
        Call positive when ``score >= threshold``. ``+inf`` means no lesion is
        called positive.
    sensitivity, specificity : float
        Achieved on the data the threshold was chosen on (optimistic for new
        data).
    target : float
    criterion : str
        "specificity" or "sensitivity": which one the target constrains.
    """

    threshold: float
    sensitivity: float
    specificity: float
    target: float
    criterion: str


def _threshold_table(truth, score):
    t = check_binary(truth, "truth", require_both=True).astype(bool)
    s = check_scores(score, "score")
    check_same_length(truth=t, score=s)
    levels = np.unique(s)  # candidate thresholds: the observed scores, ascending
    # Counts of cases/controls with score >= each level, via a reverse cumulative sum.
    idx = np.searchsorted(levels, s)
    pos_at = np.bincount(idx[t], minlength=levels.size)
    neg_at = np.bincount(idx[~t], minlength=levels.size)
    pos_ge = np.cumsum(pos_at[::-1])[::-1]
    neg_ge = np.cumsum(neg_at[::-1])[::-1]
    sens = pos_ge / t.sum()
    spec = 1.0 - neg_ge / (~t).sum()
    return levels, sens, spec


def _check_target(target) -> float:
    if not isinstance(target, (int, float, np.floating, np.integer)) or not 0.0 <= float(target) <= 1.0:
        raise ValueError(f"`target` must be a number in [0, 1], got {target!r}.")
    return float(target)


def threshold_for_specificity(truth, score, target: float) -> OperatingThreshold:
    """Lowest threshold whose specificity reaches ``target`` (hence highest sensitivity).

    Choose the threshold on TRAINING data only (e.g. the training folds of
    the cross-validation) and apply it unchanged to the held-out lesions;
    choosing it on the evaluation data makes sensitivity and specificity
    optimistic.

    Rule: a lesion is called positive when ``score >= t``. Candidates are the
    observed score values plus ``+inf`` (nothing positive). The result is the
    smallest candidate ``t`` with specificity ``>= target``; because
    sensitivity can only fall as ``t`` rises, it has the highest sensitivity
    among thresholds meeting the target.

    Ties: lesions whose score equals ``t`` are all called positive; tied
    scores cannot be split, so the achieved specificity may exceed ``target``.
    Any ``t'`` between the next lower observed score (exclusive) and ``t``
    gives the same calls on these data; the observed score is returned.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    score : array-like of float, shape (n,)
        Higher = truth 1 more likely.
    target : float in [0, 1]

    Returns
    -------
    OperatingThreshold
    """
    target = _check_target(target)
    levels, sens, spec = _threshold_table(truth, score)
    ok = np.flatnonzero(spec >= target - 1e-12)  # tolerance for targets such as 0.9 = 9/10
    if ok.size == 0:
        return OperatingThreshold(math.inf, 0.0, 1.0, target, "specificity")
    i = ok[0]
    return OperatingThreshold(float(levels[i]), float(sens[i]), float(spec[i]), target, "specificity")


def threshold_for_sensitivity(truth, score, target: float) -> OperatingThreshold:
    """Highest threshold whose sensitivity reaches ``target`` (hence highest specificity).

    Choose the threshold on TRAINING data only (see
    :func:`threshold_for_specificity`).

    Rule: positive when ``score >= t``; candidates are the observed scores
    plus ``+inf`` (nothing positive). The result is the largest ``t`` with
    sensitivity ``>= target``; it always exists (the lowest observed score
    calls every lesion positive), and ``target = 0`` gives ``+inf``.
    Ties: lesions scoring exactly ``t`` are called positive, so the achieved
    sensitivity may exceed ``target``.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    score : array-like of float, shape (n,)
    target : float in [0, 1]

    Returns
    -------
    OperatingThreshold
    """
    target = _check_target(target)
    levels, sens, spec = _threshold_table(truth, score)
    if target <= 0.0:  # +inf (nothing positive) meets the target with specificity 1
        return OperatingThreshold(math.inf, 0.0, 1.0, target, "sensitivity")
    i = np.flatnonzero(sens >= target - 1e-12)[-1]
    return OperatingThreshold(float(levels[i]), float(sens[i]), float(spec[i]), target, "sensitivity")


# --------------------------------------------------------------------------- McNemar
@dataclass(frozen=True)
class McNemarTest(ResultMixin):
    """McNemar test for paired binary calls.

    Attributes
    ----------
    n01 : int
        Pairs with ``call_a == 0`` and ``call_b == 1``.
    n10 : int
        Pairs with ``call_a == 1`` and ``call_b == 0``.
    statistic : float
        χ² statistic (1 df) for the asymptotic methods; for the exact test,
        ``min(n01, n10)`` (the binomial count, as statsmodels reports it).
    p_value : float
        Two-sided. With no discordant pair the statistic is 0 and p = 1.
    method : str
        "exact", "chi2-corrected" or "chi2".
    """

    n01: int
    n10: int
    statistic: float
    p_value: float
    method: str


def mcnemar_from_table(
    n11: int, n12: int, n21: int, n22: int, *, exact: bool = False, correction: bool = True
) -> McNemarTest:
    """McNemar test from the cells of a paired 2 × 2 table.

    Rows are the first test (a), columns the second (b), in the same category
    order, so ``n12`` and ``n21`` are the discordant cells. With rows/columns
    ordered (1, 0): ``n12`` = a positive & b negative (``n10``), ``n21`` = a
    negative & b positive (``n01``). The test is symmetric in the two.

    Parameters
    ----------
    n11, n12, n21, n22 : int
    exact : bool
        Exact two-sided binomial test of ``n12`` out of ``n12 + n21`` against
        p = ½ (recommended when ``n12 + n21`` is small, e.g. < 25).
    correction : bool
        For the χ² test: Edwards' continuity correction
        ``(|n12 − n21| − 1)² / (n12 + n21)``, R's ``mcnemar.test`` default.
        As in R, the correction is skipped when ``n12 == n21``. Ignored when
        ``exact``.

    Returns
    -------
    McNemarTest
    """
    cells = [_count(v, k) for v, k in ((n11, "n11"), (n12, "n12"), (n21, "n21"), (n22, "n22"))]
    b, c = cells[1], cells[2]  # b = n12 (a=1, b=0), c = n21 (a=0, b=1)
    n_disc = b + c
    if exact:
        method = "exact"
        stat = float(min(b, c))
        p = 1.0 if n_disc == 0 else float(binomtest(b, n_disc, 0.5).pvalue)
    else:
        use_cc = bool(correction) and b != c
        method = "chi2-corrected" if use_cc else "chi2"
        if n_disc == 0:
            stat, p = 0.0, 1.0
        else:
            num = (abs(b - c) - 1.0) ** 2 if use_cc else float(b - c) ** 2
            stat = num / n_disc
            p = float(chi2.sf(stat, 1))
    return McNemarTest(n01=c, n10=b, statistic=float(stat), p_value=min(1.0, p), method=method)


def mcnemar_test(call_a, call_b, *, exact: bool = False, correction: bool = True) -> McNemarTest:
    """McNemar test comparing two sets of binary calls on the same lesions.

    E.g. the model's thresholded calls against a reader's calls. Only the
    discordant pairs inform the test. See :func:`mcnemar_from_table` for the
    methods; lesions are treated as independent.

    Parameters
    ----------
    call_a, call_b : array-like of 0/1, shape (n,)
    exact : bool
    correction : bool

    Returns
    -------
    McNemarTest
    """
    a = check_binary(call_a, "call_a").astype(bool)
    b = check_binary(call_b, "call_b").astype(bool)
    check_same_length(call_a=a, call_b=b)
    return mcnemar_from_table(
        int(np.sum(a & b)),
        int(np.sum(a & ~b)),
        int(np.sum(~a & b)),
        int(np.sum(~a & ~b)),
        exact=exact,
        correction=correction,
    )
