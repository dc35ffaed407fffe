"""Clinical-only baseline: regularised logistic regression on clinical covariates and the baseline
diameter (``patients.csv`` / ``lesions.csv`` columns chosen by a
:class:`~dlm_ml.data.covariates.CovariateConfig`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from dlm_ml.data.covariates import CovariateConfig, CovariateEncoder
from dlm_ml.models.baselines import COVARIATES
from dlm_ml.models.baselines.tuning import grid_search, search_summary


class EncodedCovariates(BaseEstimator, TransformerMixin):
    """:class:`~dlm_ml.data.covariates.CovariateEncoder` as a pipeline step (median imputation
    with missing indicators, scaling, log and one-hot encoding, fitted on the lesions it is fit
    on), so an inner tuning fold refits it on its own lesions."""

    def __init__(self, config: CovariateConfig | None = None):
        self.config = config

    def fit(self, X: pd.DataFrame, y=None):
        self.encoder_ = CovariateEncoder(self.config).fit(X)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.encoder_.transform(X).astype(float)


class ClinicalLogistic:
    """P(pCR) from clinical covariates by L2-regularised logistic regression.

    Parameters
    ----------
    covariates : the columns read and how (numeric / log / categorical); must select some.
    c_grid : inverse regularisation strengths tried; the best mean inner AUC is chosen.
    inner_folds : patient-grouped inner folds for that choice (fewer when the fit lesions hold
        fewer patients of a class).
    seed : seeds the inner folds.
    """

    inputs = (COVARIATES,)

    def __init__(self, covariates: CovariateConfig, c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                 inner_folds: int = 5, seed: int = 0):
        if not covariates:
            raise ValueError("the clinical model needs covariates (model.estimator.covariates selects none)")
        if not c_grid or any(float(c) <= 0 for c in c_grid):
            raise ValueError(f"c_grid must hold positive numbers, got {list(c_grid)}")
        self.covariates, self.c_grid = covariates, tuple(float(c) for c in c_grid)
        self.inner_folds, self.seed = int(inner_folds), int(seed)
        self.search_ = None

    def _pipeline(self) -> Pipeline:
        return Pipeline([("covariates", EncodedCovariates(self.covariates)),
                         ("logistic", LogisticRegression(max_iter=5000))])

    def fit(self, features: pd.DataFrame, pcr, groups) -> ClinicalLogistic:
        X = features[list(self.covariates.columns)]
        self.search_ = grid_search(self._pipeline(), {"logistic__C": list(self.c_grid)}, X, np.asarray(pcr),
                                   groups, n_inner=self.inner_folds, seed=self.seed)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if self.search_ is None:
            raise RuntimeError("ClinicalLogistic used before fit")
        return self.search_.predict_proba(features[list(self.covariates.columns)])[:, 1]

    def summary(self) -> dict:
        best = self.search_.best_estimator_
        names = best.named_steps["covariates"].encoder_.feature_names
        coef = best.named_steps["logistic"].coef_[0]
        return {**search_summary(self.search_),
                "coefficients": {n: float(c) for n, c in zip(names, coef)},
                "intercept": float(best.named_steps["logistic"].intercept_[0])}
