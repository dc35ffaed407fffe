"""Post-hoc calibration: a monotone map from a model's probabilities to calibrated ones, fitted on
one fold's validation lesions and applied to that fold's test lesions.

- ``temperature`` (networks; Guo et al. 2017): ``p' = sigmoid(logit(p) / T)``, one parameter.
  It rescales confidence but keeps 0.5 where it is, which suits a network trained with a
  loss whose optimum is already centred.
- ``platt`` (other models; Platt 1999): ``p' = sigmoid(a * logit(p) + b)``. Fixes both the spread
  and the offset, e.g. the shift a class-weighted loss leaves (a network trained with
  ``weighted_bce`` predicts as if the classes were balanced).
- ``isotonic``: a non-parametric monotone step function. It needs many lesions to not overfit
  (Niculescu-Mizil & Caruana 2005 saw it overfit below about 1,000 calibration cases), so it is
  refused below :data:`MIN_ISOTONIC_LESIONS` validation lesions.

Temperature and Platt maps are strictly increasing (``a`` is bounded below by a small positive
number), so calibration never changes a fold's ranking of its lesions: AUC within a fold is
unchanged, only the probabilities move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn.isotonic import IsotonicRegression

CALIBRATION_METHODS: tuple[str, ...] = ("none", "temperature", "platt", "isotonic")
MIN_ISOTONIC_LESIONS = 1000
# Probabilities are clipped this far from 0 and 1 before taking logits (a 0/1 rule score stays finite).
_EPS = 1e-6
# Platt slope lower bound: keeps the map strictly increasing when validation lesions show no
# positive association (the ranking is kept; the probabilities flatten towards the prevalence).
MIN_PLATT_SLOPE = 1e-3


def _logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + exp(z)) - y z, computed stably
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


@dataclass(frozen=True)
class FittedCalibration:
    """A fitted calibration map. ``params``: ``temperature``; ``slope``/``intercept`` (on the logit
    scale); or the isotonic step points ``x``/``y``. ``n_lesions``/``n_pcr``: what it was fitted on."""

    method: str
    params: dict = field(default_factory=dict)
    n_lesions: int = 0
    n_pcr: int = 0

    def apply(self, prob) -> np.ndarray:
        """Calibrated probabilities, shape as ``prob``."""
        prob = np.asarray(prob, dtype=float)
        if self.method == "none":
            return prob.copy()
        if self.method == "temperature":
            return _sigmoid(_logit(prob) / self.params["temperature"])
        if self.method == "platt":
            return _sigmoid(self.params["slope"] * _logit(prob) + self.params["intercept"])
        return np.interp(prob, self.params["x"], self.params["y"])

    def to_dict(self) -> dict:
        return {"method": self.method, "n_lesions": self.n_lesions, "n_pcr": self.n_pcr, **self.params}

    @classmethod
    def from_dict(cls, data: dict) -> FittedCalibration:
        """The map :meth:`to_dict` wrote (e.g. read back from a model's JSON); refuses one that lacks
        its method's parameters."""
        data = dict(data)
        method = data.pop("method", None)
        needed = {"none": (), "temperature": ("temperature",), "platt": ("slope", "intercept"),
                  "isotonic": ("x", "y")}.get(method)
        if needed is None or any(k not in data for k in needed):
            raise ValueError(f"not a fitted calibration: method {method!r} with keys {sorted(data)}")
        n_lesions, n_pcr = int(data.pop("n_lesions", 0)), int(data.pop("n_pcr", 0))
        return cls(method, {k: data[k] for k in needed}, n_lesions, n_pcr)


@dataclass(frozen=True)
class PostHocCalibration:
    """Which calibration to fit (the ``calibration`` config group).

    Attributes
    ----------
    method : one of :data:`CALIBRATION_METHODS`.
    """

    method: str = "none"

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration.method must be one of {list(CALIBRATION_METHODS)}, got {self.method!r}")

    def fit(self, prob, pcr, where: str = "") -> FittedCalibration:
        """Fit on validation lesions: ``prob`` P(pCR) in [0, 1], ``pcr`` 0/1, both shape [N].

        ``where`` names the lesions in errors (e.g. "fold 2 validation lesions")."""
        prob, y = np.asarray(prob, dtype=float), np.asarray(pcr, dtype=float)
        if prob.shape != y.shape or prob.ndim != 1:
            raise ValueError(f"calibration: prob and pcr need the same 1-d shape, got {prob.shape} and {y.shape}")
        n, n_pcr = len(y), int(y.sum())
        label = f" ({where})" if where else ""
        if self.method == "none":
            return FittedCalibration("none", {}, n, n_pcr)
        if n == 0 or n_pcr in (0, n):
            raise ValueError(f"calibration {self.method!r} needs validation lesions of both classes{label}: "
                             f"{n} lesions, {n_pcr} with pCR")
        if self.method == "isotonic" and n < MIN_ISOTONIC_LESIONS:
            raise ValueError(f"isotonic calibration is refused with {n} validation lesions{label}: it needs at "
                             f"least {MIN_ISOTONIC_LESIONS} to not overfit (a step function with many free "
                             "levels); use calibration=platt or calibration=temperature")
        z = _logit(prob)
        if self.method == "temperature":
            res = minimize_scalar(lambda log_t: _nll(z / np.exp(log_t), y), bounds=(np.log(0.05), np.log(20.0)),
                                  method="bounded")
            return FittedCalibration("temperature", {"temperature": float(np.exp(res.x))}, n, n_pcr)
        if self.method == "platt":
            def loss(ab):
                return _nll(ab[0] * z + ab[1], y)
            start = np.array([1.0, 0.0])
            res = minimize(loss, start, method="L-BFGS-B", bounds=[(MIN_PLATT_SLOPE, None), (None, None)])
            return FittedCalibration("platt", {"slope": float(res.x[0]), "intercept": float(res.x[1])}, n, n_pcr)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(prob, y)
        return FittedCalibration("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()},
                                 n, n_pcr)
