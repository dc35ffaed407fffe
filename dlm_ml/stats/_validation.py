"""Shared argument checks and result helpers for :mod:`dlm_ml.stats`.

Every public function of the statistics package validates its inputs here so
that error messages are uniform and always name the offending argument.
Only numpy, scipy and pandas are used; nothing else of dlm_ml is imported.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from ._output import to_plain

__all__: list[str] = []  # private module: nothing is re-exported

DIRECTIONS = ("higher_positive", "lower_positive")
ALTERNATIVES = ("two-sided", "greater", "less")


# --------------------------------------------------------------------------- arrays
def as_1d(x: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 1-D numpy array or raise a ValueError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must be a 1-D array-like, got a scalar ({x!r}).")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got an array of shape {arr.shape}.")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"`{name}` is empty.")
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    """Raise unless all arrays have the same length; return that length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
        raise ValueError(f"Arguments must have the same length: {detail}.")
    return next(iter(lengths.values()))


def check_binary(x: Any, name: str, *, require_both: bool = False) -> np.ndarray:
    """Return a 0/1 ``int8`` array; accept bool, integer or float 0/1 values.

    Parameters
    ----------
    require_both
        Also require that both 0 and 1 occur (needed for any ROC statistic).
    """
    arr = as_1d(x, name)
    if arr.dtype == bool:
        out = arr.astype(np.int8)
    else:
        try:
            num = arr.astype(float)
        except (TypeError, ValueError):
            raise ValueError(
                f"`{name}` must hold 0/1 values; got non-numeric values such as "
                f"{arr[:3].tolist()!r}."
            ) from None
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            examples = np.unique(num[bad])[:5].tolist()
            raise ValueError(
                f"`{name}` must hold only 0/1 values; found {int(bad.sum())} other "
                f"value(s), e.g. {examples}."
            )
        out = num.astype(np.int8)
    if require_both:
        n_pos = int(out.sum())
        if n_pos == 0 or n_pos == out.size:
            only = 1 if n_pos else 0
            raise ValueError(
                f"`{name}` must contain both classes (0 and 1); all {out.size} "
                f"values are {only}."
            )
    return out


def check_scores(x: Any, name: str) -> np.ndarray:
    """Return a finite float64 1-D array."""
    arr = as_1d(x, name)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be numeric.") from None
    bad = ~np.isfinite(out)
    if bad.any():
        raise ValueError(
            f"`{name}` must be finite; found {int(bad.sum())} NaN/inf value(s) "
            f"(first at index {int(np.flatnonzero(bad)[0])})."
        )
    return out


def check_probabilities(x: Any, name: str) -> np.ndarray:
    """Return a float64 array of finite values within [0, 1]."""
    out = check_scores(x, name)
    bad = (out < 0) | (out > 1)
    if bad.any():
        raise ValueError(
            f"`{name}` must be probabilities in [0, 1]; found {int(bad.sum())} value(s) "
            f"outside, e.g. {out[bad][:3].tolist()}."
        )
    return out


def check_clusters(x: Any, name: str = "clusters") -> tuple[np.ndarray, np.ndarray]:
    """Encode cluster labels as integer codes ``0..I-1``.

    Returns
    -------
    codes, labels
        ``codes[i]`` is the cluster index of observation ``i``; ``labels`` are
        the distinct labels in code order (sorted when the labels are sortable).
    """
    arr = as_1d(x, name)
    missing = pd.isna(arr)
    if np.any(missing):
        raise ValueError(
            f"`{name}` has {int(np.sum(missing))} missing label(s); every observation "
            "needs a cluster (patient) id."
        )
    try:
        codes, labels = pd.factorize(arr, sort=True)
    except TypeError:  # mixed, unorderable labels: keep first-appearance order
        codes, labels = pd.factorize(arr, sort=False)
    return codes.astype(np.intp), np.asarray(labels)


# --------------------------------------------------------------------------- options
def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"`alpha` must be a number in (0, 1), got {alpha!r}.")
    return float(alpha)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_direction(direction: str) -> str:
    return check_choice(direction, "direction", DIRECTIONS)


def check_alternative(alternative: str) -> str:
    return check_choice(alternative, "alternative", ALTERNATIVES)


def oriented(score: np.ndarray, direction: str) -> np.ndarray:
    """Return the score oriented so that higher means 'more likely truth 1'."""
    return score if check_direction(direction) == "higher_positive" else -score


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------- results
class ResultMixin:
    """Gives frozen result dataclasses a JSON-friendly ``to_dict()``.

    Fields declared with ``metadata={"to_dict": False}`` (e.g. large replicate
    arrays) are left out.
    """

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("to_dict", True):
                out[f.name] = to_plain(getattr(self, f.name))
        return out


def normal_p_value(z: float, alternative: str) -> float:
    """P-value of a standard-normal statistic for the given alternative."""
    if math.isnan(z):
        return float("nan")
    if alternative == "two-sided":
        return float(2.0 * norm.sf(abs(z)))
    if alternative == "greater":
        return float(norm.sf(z))
    return float(norm.cdf(z))


def normal_ci(estimate: float, se: float, alpha: float, alternative: str) -> tuple[float, float]:
    """Wald interval matching the alternative.

    Two-sided: ``estimate ± z_{1-alpha/2} se``. One-sided intervals are open on
    one side, so that the interval excludes 0 exactly when the one-sided test
    rejects at level ``alpha`` (the convention of R's ``t.test``).
    """
    if alternative == "two-sided":
        q = norm.ppf(1.0 - alpha / 2.0)
        return float(estimate - q * se), float(estimate + q * se)
    q = norm.ppf(1.0 - alpha)
    if alternative == "greater":
        return float(estimate - q * se), math.inf
    return -math.inf, float(estimate + q * se)
