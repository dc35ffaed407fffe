"""Clinical rules as models: one measured quantity ranks the lesions, its direction fixed by the
rule, never learned.

- ``disappeared ⇒ pCR``: the 0/1 indicator of a lesion no longer seen at presurgery (the policy
  most centres follow: a disappeared lesion is left in place).
- shrinkage: ``1 - presurgery / baseline diameter``; more shrinkage, more likely pCR.
- ADC change: relative change of the lesion's ROI mean ADC; a rise (less cellular tissue) means
  response.

To give probabilities, a one-feature logistic regression with a slope held non-negative is fitted
on the fold's fit lesions: it maps the rule's score onto P(pCR) without ever reversing the rule
(if the fit lesions show the opposite association, the slope stops at 0 and every lesion gets
the fit prevalence). A weak ridge penalty on the standardised slope (``ridge``, default 1) keeps
the probabilities finite when the fit lesions separate perfectly (e.g. every disappeared lesion
had pCR), where the plain maximum-likelihood slope is infinite. A lesion without the measurement
gets the fit lesions' median and is counted in :meth:`RuleModel.summary`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from dlm_ml.models.baselines import MEASUREMENTS


class RuleModel:
    """P(pCR) = sigmoid(a + b * direction * standardised score), ``b >= 0``.

    Parameters
    ----------
    column : the lesion feature the rule reads (e.g. ``disappeared``, ``shrinkage``, ``adc_change``).
    higher_means_pcr : the rule's direction.
    inputs : the feature tables the column comes from.
    ridge : L2 penalty on the standardised slope (0 = plain maximum likelihood).
    """

    def __init__(self, column: str, higher_means_pcr: bool = True, inputs: tuple[str, ...] = (MEASUREMENTS,),
                 ridge: float = 1.0):
        if float(ridge) < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.column, self.higher_means_pcr, self.inputs = str(column), bool(higher_means_pcr), tuple(inputs)
        self.ridge = float(ridge)
        self.params_: dict | None = None

    def _score(self, features: pd.DataFrame) -> np.ndarray:
        if self.column not in features.columns:
            raise ValueError(f"rule reads column {self.column!r}, which the lesion features lack "
                             f"(columns: {sorted(features.columns)[:20]})")
        x = pd.to_numeric(features[self.column], errors="coerce").to_numpy(float)
        return x if self.higher_means_pcr else -x

    def fit(self, features: pd.DataFrame, pcr, groups=None) -> RuleModel:
        x, y = self._score(features), np.asarray(pcr, dtype=float)
        finite = np.isfinite(x)
        if not finite.any():
            raise ValueError(f"rule column {self.column!r} has no value among the {len(x)} fit lesions")
        median = float(np.median(x[finite]))
        x = np.where(finite, x, median)
        centre, scale = float(x.mean()), float(x.std()) or 1.0
        z = (x - centre) / scale

        def loss(ab):
            eta = ab[0] + ab[1] * z
            return float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * self.ridge * ab[1] ** 2

        prevalence = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        res = minimize(loss, np.array([np.log(prevalence / (1 - prevalence)), 0.0]), method="L-BFGS-B",
                       bounds=[(None, None), (0.0, None)])
        self.params_ = {"intercept": float(res.x[0]), "slope": float(res.x[1]), "centre": centre, "scale": scale,
                        "fill_value": median, "n_fit_missing": int((~finite).sum()), "n_fit": len(x)}
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if self.params_ is None:
            raise RuntimeError("RuleModel used before fit")
        p = self.params_
        x = self._score(features)
        x = np.where(np.isfinite(x), x, p["fill_value"])
        return 1.0 / (1.0 + np.exp(-(p["intercept"] + p["slope"] * (x - p["centre"]) / p["scale"])))

    def summary(self) -> dict:
        return {"rule": self.column, "higher_means_pcr": self.higher_means_pcr, **(self.params_ or {})}
