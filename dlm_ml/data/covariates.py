"""Clinical and lesion covariates as model inputs, encoded per fold.

Columns come from ``patients.csv`` (one value per patient, repeated for each of its lesions) or
from ``lesions.csv`` (one value per lesion, e.g. ``diameter_mm``, the baseline diameter). Which
ones, and how, is the ``data.covariates`` config (:class:`CovariateConfig`).

Encoding is fitted like any other model parameter: on the fold's *fit* lesions only
(:class:`CovariateEncoder`), then applied unchanged to its validation and test lesions, so no
test-fold value ever shapes a scaler, an imputed value or a category list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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
    """

    def __init__(self, config: CovariateConfig):
        self.config = config
        self._transformer: ColumnTransformer | None = None

    def fit(self, table: pd.DataFrame) -> CovariateEncoder:
        if not self.config:
            self._transformer = None
            return self
        if len(table) == 0:
            raise ValueError("covariate encoder: no lesion to fit on")
        parts = []
        if self.config.numeric:
            # A column whose fit values are all missing has no median: refuse rather than invent one.
            empty = [c for c in self.config.numeric if table[c].isna().all()]
            if empty:
                raise ValueError(f"covariate column(s) {empty} have no value in any fit lesion; they cannot be "
                                 "imputed (drop them from data.covariates)")
            numeric = list(self.config.numeric)
            parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
            # One indicator per column whatever the fit lesions hold, so a value missing only in a
            # test lesion is still flagged; indicators stay 0/1 (not scaled).
            parts.append(("missing", MissingIndicator(features="all", error_on_new=False), numeric))
        if self.config.categorical:
            parts.append(("categorical", make_pipeline(
                SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, missing_values=np.nan),
                OneHotEncoder(handle_unknown="ignore", sparse_output=False)), list(self.config.categorical)))
        self._transformer = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
        self._transformer.fit(self._prepared(table))
        return self

    def _prepared(self, table: pd.DataFrame) -> pd.DataFrame:
        out = table[list(self.config.columns)].copy()
        for col in self.config.log_numeric:
            out[col] = np.log(out[col].astype(float))
        for col in self.config.categorical:
            out[col] = out[col].astype(object)
        return out

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        if self._transformer is None:
            if self.config:
                raise RuntimeError("covariate encoder used before fit")
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.asarray(self._transformer.transform(self._prepared(table)), dtype=np.float32)

    @property
    def feature_names(self) -> list[str]:
        if self._transformer is None:
            return []
        names = []
        for part, transformer, columns in self._transformer.transformers_:
            if part == "numeric":
                names += list(columns)
            elif part == "missing":
                names += [f"missing_{c}" for c in columns]
            elif part == "categorical":
                encoder = transformer[-1]
                names += [f"{c}={value}" for c, values in zip(columns, encoder.categories_) for value in values]
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


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
