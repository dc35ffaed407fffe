"""Radiomics baseline: IBSI features of CT and ADC at each timepoint and their deltas, with
feature selection and a regularised logistic regression tuned inside each training fold.

Pipeline, fitted on one fold's fit lesions (and refitted on every inner fold while tuning):
columns without two distinct values dropped → median imputation → standardisation → greedy
correlation filter (|r| > ``correlation_threshold`` against a stronger kept feature) → the ``k``
features with the largest ANOVA F → logistic regression (L2, L1 or elastic net) with inverse
strength ``C``. ``k`` and ``C`` are chosen by patient-grouped inner cross-validation (nested:
the outer fold's test lesions never reach selection or tuning).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dlm_ml.models.baselines import RADIOMICS
from dlm_ml.models.baselines.tuning import (
    ColumnsMatching,
    CorrelationFilter,
    InformativeColumns,
    TopUnivariate,
    grid_search,
    search_summary,
)

PENALTIES = ("l2", "l1", "elasticnet")


class RadiomicsLogistic:
    """P(pCR) from radiomics features.

    Parameters
    ----------
    column_pattern : regular expression selecting the feature columns of the lesion features
        (searched in each column name); at least one column must match.
    k_grid, c_grid : numbers of selected features and inverse regularisation strengths tried.
    penalty : ``l2``, ``l1`` or ``elasticnet`` (``l1_ratio`` then mixes them).
    correlation_threshold : |Pearson r| above which the weaker of two features is dropped.
    inner_folds, seed : the patient-grouped inner folds of the search.
    """

    inputs = (RADIOMICS,)

    def __init__(self, column_pattern: str, k_grid: Sequence[int] = (5, 10, 20),
                 c_grid: Sequence[float] = (0.01, 0.1, 1.0), penalty: str = "l2", l1_ratio: float = 0.5,
                 correlation_threshold: float = 0.9, inner_folds: int = 5, seed: int = 0):
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {list(PENALTIES)}, got {penalty!r}")
        if not k_grid or any(int(k) < 1 for k in k_grid):
            raise ValueError(f"k_grid must hold integers >= 1, got {list(k_grid)}")
        if not c_grid or any(float(c) <= 0 for c in c_grid):
            raise ValueError(f"c_grid must hold positive numbers, got {list(c_grid)}")
        if not 0 < float(correlation_threshold) <= 1:
            raise ValueError(f"correlation_threshold must be in (0, 1], got {correlation_threshold}")
        self.column_pattern = str(column_pattern)
        self.k_grid, self.c_grid = tuple(int(k) for k in k_grid), tuple(float(c) for c in c_grid)
        self.penalty, self.l1_ratio = penalty, float(l1_ratio)
        self.correlation_threshold = float(correlation_threshold)
        self.inner_folds, self.seed = int(inner_folds), int(seed)
        self.columns_: list[str] = []
        self.search_ = None

    def feature_columns(self, features: pd.DataFrame) -> list[str]:
        pattern = re.compile(self.column_pattern)
        columns = [c for c in features.columns if pattern.search(str(c))]
        if not columns:
            raise ValueError(f"no lesion feature column matches {self.column_pattern!r}")
        return columns

    def _pipeline(self) -> Pipeline:
        l1_ratio = {"l2": 0.0, "l1": 1.0, "elasticnet": self.l1_ratio}[self.penalty]
        logistic = LogisticRegression(l1_ratio=l1_ratio, solver="lbfgs" if l1_ratio == 0 else "saga", max_iter=5000)
        return Pipeline([("columns", ColumnsMatching(tuple(self.columns_))), ("informative", InformativeColumns()),
                         ("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                         ("decorrelate", CorrelationFilter(self.correlation_threshold)),
                         ("select", TopUnivariate()), ("logistic", logistic)])

    def fit(self, features: pd.DataFrame, pcr, groups) -> RadiomicsLogistic:
        self.columns_ = self.feature_columns(features)
        grid = {"select__k": list(self.k_grid), "logistic__C": list(self.c_grid)}
        self.search_ = grid_search(self._pipeline(), grid, features, np.asarray(pcr), groups,
                                   n_inner=self.inner_folds, seed=self.seed)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if self.search_ is None:
            raise RuntimeError("RadiomicsLogistic used before fit")
        return self.search_.predict_proba(features)[:, 1]

    def selected_features(self) -> list[str]:
        """Names of the features the refitted model reads, in column order."""
        steps = self.search_.best_estimator_.named_steps
        names = np.asarray(self.columns_)[steps["informative"].kept_]
        names = names[steps["decorrelate"].kept_]
        return names[steps["select"].kept_].tolist()

    def summary(self) -> dict:
        coef = self.search_.best_estimator_.named_steps["logistic"].coef_[0]
        return {**search_summary(self.search_), "n_candidate_features": len(self.columns_),
                "coefficients": dict(zip(self.selected_features(), map(float, coef)))}
