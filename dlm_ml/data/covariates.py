"""Clinical and lesion covariates as model inputs, encoded per fold.

Columns come from ``patients.csv`` (one value per patient, repeated for each of its lesions) or
from ``lesions.csv`` (one value per lesion, e.g. ``diameter_mm``, the baseline diameter). Which
ones, and how, is the ``data.covariates`` config (:class:`CovariateConfig`).

Encoding is fitted like any other model parameter: on the fold's *fit* lesions only
(:class:`CovariateEncoder`), then applied unchanged to its validation and test lesions, so no
test-fold value ever shapes a scaler, an imputed value or a category list.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from dlm_ml.data.cohort import Cohort, schema

#: Category used for a missing categorical value: its own one-hot column, i.e. a missing indicator.
MISSING_CATEGORY = "(missing)"


@dataclass(frozen=True)
class CovariateConfig:
    """Which covariates a model reads.

    Attributes
    ----------
    numeric : column names, scaled to zero mean and unit variance (fit lesions); a missing value
        is imputed with the fit lesions' median and flagged in a 0/1 indicator column (one per
        numeric column, unscaled).
    log_numeric : numeric columns that are log-transformed first (strictly positive, skewed
        quantities such as CEA in µg/l); each must also be listed in ``numeric``.
    categorical : column names, one-hot encoded on the fit lesions' categories; a missing value
        is a category of its own; a category unseen in the fit lesions encodes as all zeros.
    """

    numeric: tuple[str, ...] = ()
    log_numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "log_numeric", tuple(self.log_numeric))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        problems = []
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            problems.append(f"column(s) {both} are listed as both numeric and categorical")
        stray = sorted(set(self.log_numeric) - set(self.numeric))
        if stray:
            problems.append(f"log_numeric column(s) {stray} must also be listed in numeric")
        reserved = sorted(set(self.columns) & set(schema.LESION_KEY + ("pcr",)))
        if reserved:
            problems.append(f"column(s) {reserved} are ids or the outcome, not covariates")
        if problems:
            raise ValueError("data.covariates: " + "; ".join(problems))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def __bool__(self) -> bool:
        return bool(self.columns)


def covariate_table(cohort: Cohort, lesions: pd.DataFrame, config: CovariateConfig) -> pd.DataFrame:
    """The raw covariates of ``lesions`` (``patient_id, lesion_id``), one row per lesion in the same
    order; numeric columns as float (NaN where missing), categorical ones as str (NaN where missing).

    Raises ``ValueError`` listing every problem at once: a column in neither table, a column in
    both (ambiguous), a non-numeric value (naming the file, patient and lesion), a non-positive
    value of a log-transformed column.
    """
    patient_cols = set(cohort.patients.columns) - {"patient_id"}
    lesion_cols = set(cohort.lesions.columns) - set(schema.LESION_KEY)
    problems = []
    for col in config.columns:
        if col in patient_cols and col in lesion_cols:
            problems.append(f"covariate {col!r} is a column of both {schema.PATIENTS_CSV} and {schema.LESIONS_CSV}")
        elif col not in patient_cols and col not in lesion_cols:
            problems.append(f"covariate {col!r} is a column of neither {schema.PATIENTS_CSV} (columns: "
                            f"{sorted(patient_cols)}) nor {schema.LESIONS_CSV} (columns: {sorted(lesion_cols)})")
    if problems:
        raise ValueError("; ".join(problems))
    key = list(schema.LESION_KEY)
    table = lesions[key].reset_index(drop=True)
    p_cols = [c for c in config.columns if c in patient_cols]
    l_cols = [c for c in config.columns if c in lesion_cols]
    if p_cols:
        table = table.merge(cohort.patients[["patient_id", *p_cols]], on="patient_id", how="left", validate="m:1")
    if l_cols:
        table = table.merge(cohort.lesions[[*key, *l_cols]], on=key, how="left", validate="1:1")
    source = {**dict.fromkeys(p_cols, schema.PATIENTS_CSV), **dict.fromkeys(l_cols, schema.LESIONS_CSV)}
    for col in config.numeric:
        raw = table[col]
        values = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & values.isna()
        if col in config.log_numeric:
            bad |= values.notna() & (values <= 0)
        for row in table[bad].itertuples():
            what = "is not a number" if col not in config.log_numeric else "is not a positive number (log_numeric)"
            problems.append(f"{source[col]}: patient {row.patient_id} lesion {row.lesion_id}: {col} = "
                            f"{getattr(row, col)!r} {what}")
        table[col] = values.astype(float)
    for col in config.categorical:
        table[col] = table[col].astype(object).where(table[col].notna(), np.nan)
        table.loc[table[col].notna(), col] = table.loc[table[col].notna(), col].astype(str)
    if problems:
        raise ValueError("covariates: " + "; ".join(problems))
    return table[[*key, *config.columns]]


class CovariateEncoder:
    """Imputation, scaling and one-hot encoding fitted on one set of lesions.

    ``fit(table)`` then ``transform(table)`` → float32 [N, K]; ``feature_names`` names the K
    columns in order: the scaled numeric columns, their missing indicators (``missing_<column>``),
    the one-hot columns (``<column>=<value>``).
    With an empty config, K = 0.

    What ``fit`` learns is plain data, :meth:`state` (JSON-serialisable, stored beside a fold's
    weights), and ``transform`` computes from that state only, so an encoder restored with
    :meth:`from_state` encodes exactly as the fitted one did.
    """

    def __init__(self, config: CovariateConfig):
        self.config = config
        self._state: dict | None = None

    def fit(self, table: pd.DataFrame) -> CovariateEncoder:
        if not self.config:
            self._state = _state_dict(self.config, {}, {})
            return self
        if len(table) == 0:
            raise ValueError("covariate encoder: no lesion to fit on")
        self._check_columns(table)
        numeric: dict[str, dict[str, float]] = {}
        if self.config.numeric:
            # A column whose fit values are all missing has no median: refuse rather than invent one.
            empty = [c for c in self.config.numeric if table[c].isna().all()]
            if empty:
                raise ValueError(f"covariate column(s) {empty} have no value in any fit lesion; they cannot be "
                                 "imputed (drop them from data.covariates)")
            imputer = SimpleImputer(strategy="median")
            scaler = StandardScaler().fit(imputer.fit_transform(self._numeric_values(table)))
            for i, col in enumerate(self.config.numeric):
                numeric[col] = {"median": float(imputer.statistics_[i]), "mean": float(scaler.mean_[i]),
                                "scale": float(scaler.scale_[i])}
        # Sorted, as scikit-learn's OneHotEncoder orders string categories.
        categories = {col: sorted(set(self._category_values(table, col).tolist())) for col in self.config.categorical}
        self._state = _state_dict(self.config, numeric, categories)
        return self

    def _check_columns(self, table: pd.DataFrame) -> None:
        absent = [c for c in self.config.columns if c not in table.columns]
        if absent:
            raise ValueError(f"covariate table lacks column(s) {absent} (it has {list(table.columns)})")

    def _numeric_values(self, table: pd.DataFrame) -> np.ndarray:
        """float64 [N, n_numeric]: the numeric columns, log-transformed where configured; NaN = missing."""
        columns = []
        for col in self.config.numeric:
            values = table[col].to_numpy(dtype=float)
            if col in self.config.log_numeric:
                values = np.log(values)
            infinite = np.isinf(values)
            if infinite.any():
                first = int(np.flatnonzero(infinite)[0])
                where = (f"patient {table['patient_id'].iloc[first]} lesion {table['lesion_id'].iloc[first]}"
                         if {"patient_id", "lesion_id"} <= set(table.columns) else f"row {first} of the table")
                raise ValueError(f"covariate {col!r}: {int(infinite.sum())} infinite value(s), e.g. {where}")
            columns.append(values)
        return np.stack(columns, axis=1) if columns else np.zeros((len(table), 0))

    @staticmethod
    def _category_values(table: pd.DataFrame, col: str) -> np.ndarray:
        """object [N]: the values of a categorical column as strings, MISSING_CATEGORY where missing.
        Strings, as :func:`covariate_table` gives them, so that a state read back from JSON
        compares equal to the values of a new table."""
        values = table[col]
        return np.array([MISSING_CATEGORY if pd.isna(v) else str(v) for v in values], dtype=object)

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """float32 [N, K] of ``table`` (one row per lesion, the config's columns), encoded with the
        fitted state: log where configured, the fit median for a missing numeric value,
        ``(x - mean) / scale``, a 0/1 missing indicator per numeric column (from the value before
        imputation), one-hot over the fit categories (missing → ``MISSING_CATEGORY``; a category
        unseen at fit → all zeros)."""
        if self._state is None:
            if self.config:
                raise RuntimeError("covariate encoder used before fit")
            return np.zeros((len(table), 0), dtype=np.float32)
        self._check_columns(table)
        blocks = [np.zeros((len(table), 0))]
        if self.config.numeric:
            fitted = [self._state["numeric"][c] for c in self.config.numeric]
            median, mean, scale = (np.array([f[k] for f in fitted]) for k in ("median", "mean", "scale"))
            values = self._numeric_values(table)
            missing = np.isnan(values)
            blocks += [(np.where(missing, median, values) - mean) / scale, missing.astype(float)]
        for col in self.config.categorical:
            categories = np.array(self._state["categorical"][col], dtype=object)
            blocks.append((self._category_values(table, col)[:, None] == categories[None, :]).astype(float))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    @property
    def feature_names(self) -> list[str]:
        if self._state is None:
            return []
        numeric = list(self.config.numeric)
        return numeric + [f"missing_{c}" for c in numeric] + [
            f"{c}={value}" for c in self.config.categorical for value in self._state["categorical"][c]]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def state(self) -> dict:
        """The fitted encoding as plain data (JSON-serialisable, no pickle)::

            {"version": 1,
             "config": {"numeric": [...], "log_numeric": [...], "categorical": [...]},
             "numeric": {column: {"median": m, "mean": mu, "scale": s}},   # in log space where log_numeric
             "categorical": {column: [category, ...]}}                     # fit categories, in column order

        ``median`` is what a missing value is imputed with; ``mean`` and ``scale`` map the imputed
        value x to ``(x - mean) / scale``."""
        if self._state is None:
            raise RuntimeError("covariate encoder state asked before fit")
        return copy.deepcopy(self._state)

    @classmethod
    def from_state(cls, state: dict) -> CovariateEncoder:
        """The encoder of :meth:`state` (e.g. read back from JSON); ``ValueError`` listing every
        problem of a malformed state."""
        config = _check_state(state)
        encoder = cls(config)
        encoder._state = _state_dict(
            config, {c: {k: float(state["numeric"][c][k]) for k in _NUMERIC_FIT} for c in config.numeric},
            {c: list(state["categorical"][c]) for c in config.categorical})
        return encoder


STATE_VERSION = 1
_NUMERIC_FIT = ("median", "mean", "scale")


def _state_dict(config: CovariateConfig, numeric: dict, categorical: dict) -> dict:
    return {"version": STATE_VERSION,
            "config": {"numeric": list(config.numeric), "log_numeric": list(config.log_numeric),
                       "categorical": list(config.categorical)},
            "numeric": numeric, "categorical": categorical}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_state(state) -> CovariateConfig:
    """The config of a covariate encoder state, or ``ValueError`` naming every problem of it."""
    def refuse(problems: list[str]):
        raise ValueError("covariate encoder state: " + "; ".join(problems))

    if not isinstance(state, dict):
        refuse([f"must be a mapping, got {type(state).__name__}"])
    problems = []
    if state.get("version") != STATE_VERSION:
        problems.append(f"version must be {STATE_VERSION}, got {state.get('version')!r}")
    for key in ("config", "numeric", "categorical"):
        if not isinstance(state.get(key), dict):
            problems.append(f"{key!r} must be a mapping")
    if problems:
        refuse(problems)
    raw = state["config"]
    lists = {k: raw.get(k) for k in ("numeric", "log_numeric", "categorical")}
    for k, v in lists.items():
        if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
            problems.append(f"config.{k} must be a list of column names")
    if problems:
        refuse(problems)
    try:
        config = CovariateConfig(**lists)
    except ValueError as err:
        refuse([str(err)])
    numeric, categorical = state["numeric"], state["categorical"]
    for name, fitted, wanted in (("numeric", numeric, config.numeric), ("categorical", categorical,
                                                                       config.categorical)):
        if set(fitted) != set(wanted):
            problems.append(f"{name} holds column(s) {sorted(fitted)}, the config lists {sorted(wanted)}")
    for col in set(config.numeric) & set(numeric):
        fit = numeric[col]
        if not isinstance(fit, dict) or set(fit) != set(_NUMERIC_FIT) or not all(_is_number(fit[k]) for k in fit):
            problems.append(f"numeric[{col!r}] must map {list(_NUMERIC_FIT)} to finite numbers, got {fit!r}")
        elif fit["scale"] <= 0:
            problems.append(f"numeric[{col!r}] scale must be positive, got {fit['scale']!r}")
    for col in set(config.categorical) & set(categorical):
        values = categorical[col]
        if (not isinstance(values, list) or not all(isinstance(v, str) for v in values)
                or len(set(values)) != len(values)):
            problems.append(f"categorical[{col!r}] must be a list of distinct category strings, got {values!r}")
    if problems:
        refuse(sorted(problems))
    return config


@dataclass
class LesionCovariates:
    """The raw covariates of a patch set: ``table`` has one row per lesion, in the order of
    :attr:`dlm_ml.data.patches.PatchSet.lesions`, with ``patient_id, lesion_id`` and the columns
    of ``config`` (as :func:`covariate_table` returns them)."""

    config: CovariateConfig
    table: pd.DataFrame

    def check_aligned(self, lesions: pd.DataFrame) -> None:
        """Refuse a table whose rows are not exactly ``lesions`` (``patient_id, lesion_id``), in order."""
        key = list(schema.LESION_KEY)
        mine, theirs = self.table[key].astype(str).to_numpy(), lesions[key].astype(str).to_numpy()
        if mine.shape != theirs.shape or not (mine == theirs).all():
            raise ValueError(f"covariate table ({len(mine)} rows) does not list the {len(theirs)} lesions of the "
                             "patch set in the same order")


def lesion_covariates(cohort: Cohort, lesions: pd.DataFrame, config: CovariateConfig) -> LesionCovariates | None:
    """The raw covariates of ``lesions`` (e.g. a patch set's), or ``None`` when ``config`` selects none."""
    return LesionCovariates(config, covariate_table(cohort, lesions, config)) if config else None
