"""Nested, patient-grouped hyper-parameter search and small feature-selection steps.

Everything here is fitted inside one training fold: the outer fold's test lesions never reach
it. The inner folds are patient-grouped and label-stratified like the outer ones.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import FitFailedWarning
from sklearn.feature_selection import f_classif
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold


class ColumnsMatching(BaseEstimator, TransformerMixin):
    """Keep the DataFrame columns whose name is in ``columns`` (in that order); refuses a frame
    lacking any of them, naming them."""

    def __init__(self, columns: tuple[str, ...] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None):
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ValueError(f"lesion features lack column(s) {missing[:10]} ({len(missing)} in all)")
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return X[list(self.columns)].to_numpy(dtype=float)


class InformativeColumns(BaseEstimator, TransformerMixin):
    """Drop columns without two distinct finite values among the fit lesions (nothing to learn,
    and an imputer or scaler would be undefined on them). ``kept_`` indexes the kept columns."""

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        kept = []
        for j in range(X.shape[1]):
            finite = X[np.isfinite(X[:, j]), j]
            if finite.size and np.ptp(finite) > 0:
                kept.append(j)
        if not kept:
            raise ValueError("no feature varies among the fit lesions")
        self.kept_ = np.asarray(kept)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.kept_]


class CorrelationFilter(BaseEstimator, TransformerMixin):
    """Greedy redundancy filter: walk the columns in order of univariate F statistic (fit lesions)
    and keep one unless its |Pearson r| with a kept column exceeds ``threshold``. Expects
    imputed, finite input."""

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        f, _ = f_classif(X, y)
        order = np.argsort(-np.nan_to_num(f, nan=-1.0), kind="stable")
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(np.nan_to_num(np.corrcoef(X, rowvar=False), nan=0.0)).reshape(X.shape[1], X.shape[1])
        kept: list[int] = []
        for j in order:
            if all(corr[j, k] <= self.threshold for k in kept):
                kept.append(int(j))
        self.kept_ = np.sort(np.asarray(kept))
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.kept_]


class TopUnivariate(BaseEstimator, TransformerMixin):
    """Keep the ``k`` columns with the largest ANOVA F statistic on the fit lesions (all when
    fewer); ties keep the earlier column, so the choice is deterministic."""

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y):
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        f, _ = f_classif(np.asarray(X, dtype=float), y)
        order = np.argsort(-np.nan_to_num(f, nan=-1.0), kind="stable")
        self.kept_ = np.sort(order[: int(self.k)])
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.kept_]


class TooFewPatientsToTune(ValueError):
    """The fit lesions hold fewer than two patients with one of the outcomes: no inner fold
    could score a setting."""


def inner_folds(groups: np.ndarray, pcr: np.ndarray, wanted: int, seed: int) -> StratifiedGroupKFold:
    """Patient-grouped, label-stratified inner folds: ``wanted`` of them, fewer when there are
    fewer patients with each class (every inner validation fold should hold both classes)."""
    groups, pcr = np.asarray(groups), np.asarray(pcr)
    per_class = [len(np.unique(groups[pcr == c])) for c in (0, 1)]
    n = min(int(wanted), *per_class)
    if n < 2:
        raise TooFewPatientsToTune(f"nested tuning needs >= 2 patients with each outcome among the fit lesions; "
                                   f"got {per_class[0]} without and {per_class[1]} with pCR")
    return StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=int(seed))


def grid_search(pipeline, grid: dict, features, pcr, groups, *, n_inner: int, seed: int) -> GridSearchCV:
    """Fit ``pipeline`` for every point of ``grid`` on patient-grouped inner folds of the fit
    lesions, choose the best mean inner AUC, refit on all fit lesions. An inner fold where a
    setting fails or AUC is undefined scores NaN and is averaged out by sklearn; a setting that
    fails everywhere is never chosen.

    With too few patients of a class to tune (a very small cohort), the middle point of every
    grid axis is used untuned; :func:`search_summary` then says so (``tuned: false`` and why)."""
    try:
        cv = inner_folds(groups, pcr, n_inner, seed)
    except TooFewPatientsToTune as err:
        middle = {k: [list(v)[(len(v) - 1) // 2]] for k, v in grid.items()}
        search = GridSearchCV(pipeline, middle, cv=[(np.arange(len(pcr)), np.arange(len(pcr)))], refit=True)
        search.fit(features, pcr)
        search.untuned_reason_ = str(err)
        return search
    search = GridSearchCV(pipeline, grid, scoring="roc_auc", cv=cv, refit=True, n_jobs=1, error_score=np.nan)
    with warnings.catch_warnings():
        # a failing setting is recorded as NaN (error_score) and reported in summary(), not warned per fold
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the test scores are non-finite")
        search.fit(features, pcr, groups=np.asarray(groups))
    return search


def search_summary(search: GridSearchCV) -> dict:
    """Chosen parameters, their mean inner AUC, and every point's mean inner AUC."""
    if getattr(search, "untuned_reason_", None):
        return {"tuned": False, "reason": search.untuned_reason_,
                "params": {k: _plain(v) for k, v in search.best_params_.items()}}
    results = search.cv_results_
    grid = [{"params": {k: _plain(v) for k, v in p.items()}, "mean_inner_auc": _plain(s)}
            for p, s in zip(results["params"], results["mean_test_score"])]
    return {"tuned": True, "best_params": {k: _plain(v) for k, v in search.best_params_.items()},
            "best_inner_auc": _plain(search.best_score_), "n_inner_folds": int(search.n_splits_), "grid": grid}


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v
