"""Calibration of predicted probabilities: Brier score, logistic recalibration, reliability curve.

Logistic recalibration (Cox 1958; Van Calster et al. 2016, J Clin Epidemiol
74:167) regresses the observed outcome on the logit of the prediction,
``lp = logit(p)``:

* **calibration slope** ``b`` in ``logit P(y=1) = a + b·lp`` (ideal 1; < 1
  means predictions too extreme, typical of overfitting);
* **calibration-in-the-large** ``a0`` in ``logit P(y=1) = a0 + offset(lp)``
  (ideal 0; > 0 means predictions too low on average).

Both are maximum-likelihood fits by Newton–Raphson (equivalently IRLS) in
numpy, with standard errors from the inverse observed information.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from ._output import fmt_num
from ._validation import (
    ResultMixin,
    check_alpha,
    check_binary,
    check_choice,
    check_positive_int,
    check_probabilities,
    check_same_length,
)
from .operating_points import proportion_ci

__all__ = [
    "CalibrationResult",
    "brier_score",
    "calibration_intercept_slope",
    "reliability_curve",
]

DEFAULT_EPS = 1e-8


def _truth_prob(truth, prob):
    t = check_binary(truth, "truth").astype(float)
    p = check_probabilities(prob, "prob")
    check_same_length(truth=t, prob=p)
    return t, p


def brier_score(truth, prob) -> float:
    """Mean squared difference between predicted probability and outcome.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    prob : array-like of float in [0, 1], shape (n,)
        Predicted probability of truth 1.

    Returns
    -------
    float
        0 is perfect; a constant prediction of the prevalence ``π`` scores
        ``π(1 − π)``.
    """
    t, p = _truth_prob(truth, prob)
    return float(np.mean((p - t) ** 2))


@dataclass(frozen=True)
class CalibrationResult(ResultMixin):
    """Logistic recalibration of predicted probabilities.

    Attributes
    ----------
    intercept : float
        Calibration-in-the-large ``a0`` (model with ``logit(p)`` as offset).
    intercept_se : float
    slope : float
        Calibration slope ``b``.
    slope_se : float
    slope_model_intercept : float
        ``a`` of the slope model ``a + b·logit(p)`` (needed to recalibrate).
    slope_model_intercept_se : float
    n : int
    n_events : int
    eps : float
        Probabilities were clipped to ``[eps, 1 − eps]`` before the logit.
    n_clipped : int
        How many probabilities the clipping changed (predictions of exactly 0 or
        1); when > 0, slope and intercept depend on ``eps`` and a UserWarning
        was emitted.
    converged : bool
        Whether both Newton fits converged (False e.g. under separation).
    """

    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    slope_model_intercept: float
    slope_model_intercept_se: float
    n: int
    n_events: int
    eps: float
    n_clipped: int
    converged: bool

    def summary(self) -> str:
        """Readable fixed-width report, with the clipping when it changed predictions."""
        lines = [
            f"Logistic recalibration, n = {self.n} ({self.n_events} events)",
            f"  calibration-in-the-large  {fmt_num(self.intercept)}  (SE {fmt_num(self.intercept_se)})",
            f"  calibration slope         {fmt_num(self.slope)}  (SE {fmt_num(self.slope_se)})",
        ]
        if self.n_clipped:
            what = "probability" if self.n_clipped == 1 else "probabilities"
            lines.append(
                f"  {self.n_clipped} {what} of exactly 0 or 1 clipped to [eps, 1 - eps], "
                f"eps = {self.eps:g}: slope and intercept depend on eps"
            )
        if not self.converged:
            lines.append("  the fit did not converge (separation?): estimates unreliable")
        return "\n".join(lines) + "\n"


def _logistic_newton(
    y: np.ndarray, x: np.ndarray, offset: np.ndarray, *, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, bool]:
    """ML logistic regression ``logit P = x @ beta + offset`` by Newton–Raphson.

    Step-halving keeps the log-likelihood increasing, which makes the fit
    robust to far starting points. Returns (beta, covariance, converged).
    """
    beta = np.zeros(x.shape[1])

    def loglik(bv: np.ndarray) -> float:
        eta = x @ bv + offset
        # log-likelihood in a numerically stable form: y*eta - log(1 + e^eta)
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    ll = loglik(beta)
    converged = False
    for _ in range(max_iter):
        mu = expit(x @ beta + offset)
        grad = x.T @ (y - mu)
        info = (x * (mu * (1 - mu))[:, None]).T @ x
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        for _half in range(40):
            ll_new = loglik(beta + step)
            if ll_new >= ll - 1e-12 * (1 + abs(ll)):
                break
            step = step / 2
        beta = beta + step
        ll = ll_new
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    mu = expit(x @ beta + offset)
    info = (x * (mu * (1 - mu))[:, None]).T @ x
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full((x.shape[1],) * 2, np.nan)
    return beta, cov, converged


def calibration_intercept_slope(
    truth, prob, *, eps: float = DEFAULT_EPS
) -> CalibrationResult:
    """Calibration intercept (in-the-large) and slope by logistic recalibration.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
        Both classes must be present.
    prob : array-like of float in [0, 1], shape (n,)
        Predicted probability of truth 1 (in dlm_ml: P(pCR)).
    eps : float
        ``prob`` is clipped to ``[eps, 1 − eps]`` so that ``logit(prob)`` is
        finite; predictions of exactly 0 or 1 otherwise make the likelihood
        degenerate. The clipped value's logit (±18.4 for the default) then
        sets the slope: a UserWarning with the number clipped is emitted, and
        the number is reported in ``n_clipped``.

    Returns
    -------
    CalibrationResult
        A RuntimeWarning is emitted when a fit does not converge (e.g. the
        outcome is perfectly separated by ``prob``).
    """
    if not isinstance(eps, (float, int)) or not 0.0 < eps < 0.5:
        raise ValueError(f"`eps` must be in (0, 0.5), got {eps!r}.")
    check_binary(truth, "truth", require_both=True)
    y, p = _truth_prob(truth, prob)
    pc = np.clip(p, eps, 1.0 - eps)
    n_clipped = int(np.sum(pc != p))
    if n_clipped:
        # logit(0) is -inf: the clipped values get logit(eps), an arbitrary leverage point
        # whose distance from the other predictions moves the fitted slope.
        warnings.warn(
            f"{n_clipped} predicted probabilit{'y' if n_clipped == 1 else 'ies'} of exactly 0 or 1 "
            f"clipped to [eps, 1 - eps] before the logit: calibration slope/intercept depend on "
            f"the clipping eps={eps:g}; such probabilities come from a rule or a saturated model.",
            UserWarning,
            stacklevel=2,
        )
    lp = logit(pc)
    n = y.size
    ones = np.ones((n, 1))
    # Calibration-in-the-large: intercept only, logit(p) as offset.
    b0, cov0, conv0 = _logistic_newton(y, ones, lp)
    # Calibration slope: intercept + coefficient of logit(p).
    b1, cov1, conv1 = _logistic_newton(y, np.column_stack([ones, lp]), np.zeros(n))
    converged = conv0 and conv1
    if not converged:
        warnings.warn(
            "Logistic recalibration did not converge (separation or degenerate "
            "predictions?); estimates may be unreliable.",
            RuntimeWarning,
            stacklevel=2,
        )
    return CalibrationResult(
        intercept=float(b0[0]),
        intercept_se=float(math.sqrt(cov0[0, 0])) if cov0[0, 0] >= 0 else float("nan"),
        slope=float(b1[1]),
        slope_se=float(math.sqrt(cov1[1, 1])) if cov1[1, 1] >= 0 else float("nan"),
        slope_model_intercept=float(b1[0]),
        slope_model_intercept_se=float(math.sqrt(cov1[0, 0])) if cov1[0, 0] >= 0 else float("nan"),
        n=int(n),
        n_events=int(y.sum()),
        eps=float(eps),
        n_clipped=n_clipped,
        converged=converged,
    )


def reliability_curve(
    truth,
    prob,
    n_bins: int = 10,
    strategy: str = "uniform",
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Binned observed fraction against mean predicted probability.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    prob : array-like of float in [0, 1], shape (n,)
    n_bins : int
        Number of bins requested.
    strategy : {"uniform", "quantile"}
        "uniform": equal-width bins on [0, 1]; "quantile": edges at quantiles
        of ``prob`` (equal counts up to ties; duplicate edges are merged, so
        fewer bins may result). Bins are left-closed, the last also
        right-closed (``[e0, e1), ..., [e_{k-1}, e_k]``).
    alpha : float
        For the Wilson CI of each bin's observed fraction.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin`` (index), ``bin_low``,
        ``bin_high``, ``count``, ``n_positive``, ``mean_predicted``,
        ``observed_fraction``, ``ci_low``, ``ci_high``. Empty bins are omitted.
    """
    y, p = _truth_prob(truth, prob)
    n_bins = check_positive_int(n_bins, "n_bins")
    strategy = check_choice(strategy, "strategy", ("uniform", "quantile"))
    alpha = check_alpha(alpha)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
        if edges.size == 1:  # all predictions equal: one bin
            edges = np.array([edges[0], edges[0]])
    # searchsorted on the inner edges gives left-closed bins; the last bin also
    # takes values equal to the top edge.
    idx = np.searchsorted(edges[1:-1], p, side="right")
    rows = []
    for b in range(edges.size - 1):
        sel = idx == b
        cnt = int(sel.sum())
        if cnt == 0:
            continue
        k = int(y[sel].sum())
        ci = proportion_ci(k, cnt, method="wilson", alpha=alpha)
        rows.append(
            dict(
                bin=b,
                bin_low=float(edges[b]),
                bin_high=float(edges[b + 1]),
                count=cnt,
                n_positive=k,
                mean_predicted=float(p[sel].mean()),
                observed_fraction=k / cnt,
                ci_low=ci.ci_low,
                ci_high=ci.ci_high,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            "bin",
            "bin_low",
            "bin_high",
            "count",
            "n_positive",
            "mean_predicted",
            "observed_fraction",
            "ci_low",
            "ci_high",
        ],
    )
