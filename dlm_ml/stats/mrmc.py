"""Multi-reader multi-case (MRMC) ROC analysis.

Obuchowski–Rockette (OR) analysis of empirical AUCs with the denominator degrees
of freedom of Hillis (2007, 2008), for a fully crossed design: every reader reads
every case under every test (modality). The three conventional analyses are
reported side by side:

* **random readers, random cases** (RRRC): generalises to readers and cases like
  those studied; Hillis' F test and ``t`` intervals;
* **fixed readers, random cases** (FRRC): generalises to cases only; chi-square
  test and normal intervals;
* **random readers, fixed cases** (RRFC): generalises to readers only;
  conventional F test on the test × reader interaction.

AUCs are empirical (trapezoidal, ties count one half). The OR error covariances
come from a jackknife over cases or from DeLong's structural components; when a
``cluster`` column is given (lesions nested in patients), the jackknife leaves
out one patient at a time and the DeLong variant becomes Obuchowski's (1997)
clustered estimator, so the patient is the unit of independence.

A model is compared with radiologists by entering it as one more "test" whose
rating is its probability, identical for every reader: see
:func:`model_vs_readers`.

References
----------
Obuchowski NA, Rockette HE (1995). Hypothesis testing of diagnostic accuracy for
multiple readers and multiple tests. Commun Stat Simul Comput 24:285–308.
Hillis SL (2007). A comparison of denominator degrees of freedom methods for
multiple observer ROC analysis. Stat Med 26:596–619.
Hillis SL, Berbaum KS, Metz CE (2008). Recent developments in the
Dorfman-Berbaum-Metz procedure for multireader ROC study analysis. Acad Radiol
15:647–661.
Obuchowski NA (1997). Nonparametric analysis of clustered ROC curve data.
Biometrics 53:567–578.
Smith BJ, Hillis SL (2020). Multi-reader multi-case analysis of variance
software for diagnostic performance comparison of imaging modalities. Proc SPIE
11316 (R package MRMCaov, whose conventions are followed here).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import check_alpha, check_choice
from .clustered import clustered_auc_covariance
from .roc import delong_covariance

__all__ = [
    "COV_METHODS",
    "MRMCAnalysis",
    "MRMCResult",
    "ORComponents",
    "model_vs_readers",
    "mrmc",
]

COV_METHODS = ("jackknife", "delong")

_ANALYSES = {
    "rrrc": "random readers, random cases",
    "frrc": "fixed readers, random cases",
    "rrfc": "random readers, fixed cases",
}


# =========================================================================== results
@dataclass(frozen=True)
class ORComponents:
    """Obuchowski–Rockette variance components and mean squares.

    Attributes
    ----------
    var_error : float
        Mean variance of a reader × test AUC over its cases (``Var(error)``).
    cov1 : float
        Mean covariance of AUCs of the same reader under different tests.
    cov2 : float
        Mean covariance of AUCs of different readers under the same test
        (NaN with a single reader).
    cov3 : float
        Mean covariance of AUCs of different readers under different tests
        (NaN with a single reader).
    ms_t : float
        Mean square for tests, ``r/(t-1) Σ_i (θ_i. - θ..)²``.
    ms_r : float
        Mean square for readers (NaN with a single reader).
    ms_tr : float
        Mean square for the test × reader interaction (NaN with a single reader).
    cov_method : str
        ``"jackknife"`` or ``"delong"``.
    """

    var_error: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_r: float
    ms_tr: float
    cov_method: str


@dataclass(frozen=True, eq=False)  # holds frames/arrays: compare fields, not objects
class MRMCAnalysis:
    """One of the three OR analyses (RRRC, FRRC or RRFC).

    Attributes
    ----------
    name : str
        ``"rrrc"``, ``"frrc"`` or ``"rrfc"``.
    description : str
        Plain-words name, e.g. ``"random readers, random cases"``.
    statistic_name : str
        ``"F"`` (RRRC, RRFC) or ``"chi2"`` (FRRC).
    statistic : float
        Global test statistic of equal mean AUC across all tests.
    df1 : float
        Numerator degrees of freedom (``t - 1``); the chi-square df for FRRC.
    df2 : float or None
        Denominator degrees of freedom: Hillis' df for RRRC (``inf`` when the
        test × reader mean square is 0), ``(t-1)(r-1)`` for RRFC, ``None`` for FRRC.
    p_value : float
        P-value of the global test.
    denominator : float
        Denominator of the global test: ``MS(T*R) + r·max(Cov2 - Cov3, 0)``
        (RRRC), ``Var - Cov1 + (r-1)(Cov2 - Cov3)`` (FRRC), ``MS(T*R)`` (RRFC).
    differences : pandas.DataFrame
        One row per pair of tests: ``test_a, test_b, estimate`` (mean AUC of
        ``test_a`` minus ``test_b``), ``se, df`` (``inf`` for normal-based
        analyses), ``statistic`` (t or z), ``p_value`` (two-sided),
        ``ci_low, ci_high``.
    tests : pandas.DataFrame
        One row per test: ``test, auc`` (mean over readers), ``se, df, ci_low,
        ci_high``; single-test intervals are clipped to [0, 1] as in MRMCaov.
    reader_differences : pandas.DataFrame or None
        FRRC only: per-reader test differences ``reader, test_a, test_b,
        estimate, se, statistic, p_value, ci_low, ci_high`` (normal-based,
        using that reader's own AUC covariance).
    """

    name: str
    description: str
    statistic_name: str
    statistic: float
    df1: float
    df2: float | None
    p_value: float
    denominator: float
    differences: pd.DataFrame = field(repr=False)
    tests: pd.DataFrame = field(repr=False)
    reader_differences: pd.DataFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (NaN and infinities become ``None``)."""
        out = {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }
        return out


@dataclass(frozen=True, eq=False)  # holds frames/arrays: compare fields, not objects
class MRMCResult:
    """Result of :func:`mrmc`.

    Attributes
    ----------
    aucs : pandas.DataFrame
        Tidy reader × test table: ``test, reader, auc, se`` (``se`` is the
        square root of the diagonal of :attr:`covariance`).
    components : ORComponents
        OR covariances and mean squares.
    rrrc : MRMCAnalysis or None
        Random readers and random cases (``None`` with a single reader).
    frrc : MRMCAnalysis
        Fixed readers, random cases.
    rrfc : MRMCAnalysis or None
        Random readers, fixed cases (``None`` with a single reader).
    components_by_test : pandas.DataFrame
        Per test: ``test, var_error`` (mean AUC variance), ``cov2`` (mean
        covariance of different readers) and ``ms_r`` (reader mean square), the
        inputs of the single-test intervals.
    covariance : pandas.DataFrame
        Covariance matrix of the reader × test AUCs, indexed by
        ``(test, reader)`` on both axes.
    tests, readers : tuple
        Levels in analysis order; differences are ``tests[i] - tests[j]`` for
        ``i < j``.
    n_cases, n_positive, n_negative : int
        Numbers of cases, of cases with truth 1 and with truth 0.
    n_clusters : int or None
        Number of clusters (patients) when a cluster column was given.
    cov_method : str
        ``"jackknife"`` or ``"delong"``.
    alpha : float
        Level of the confidence intervals (``1 - alpha`` coverage).
    """

    aucs: pd.DataFrame = field(repr=False)
    components: ORComponents
    rrrc: MRMCAnalysis | None
    frrc: MRMCAnalysis
    rrfc: MRMCAnalysis | None
    components_by_test: pd.DataFrame = field(repr=False)
    covariance: pd.DataFrame = field(repr=False)
    tests: tuple
    readers: tuple
    n_cases: int
    n_positive: int
    n_negative: int
    n_clusters: int | None
    cov_method: str
    alpha: float

    @property
    def test_aucs(self) -> pd.DataFrame:
        """Per-test mean AUCs with the RRRC interval (FRRC with one reader)."""
        return (self.rrrc or self.frrc).tests

    def analyses(self) -> list[MRMCAnalysis]:
        """The available analyses in the order RRRC, FRRC, RRFC."""
        return [a for a in (self.rrrc, self.frrc, self.rrfc) if a is not None]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (NaN and infinities become ``None``)."""
        cov = self.covariance
        return {
            "n_cases": self.n_cases,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "n_clusters": self.n_clusters,
            "n_readers": len(self.readers),
            "n_tests": len(self.tests),
            "tests": _jsonable(list(self.tests)),
            "readers": _jsonable(list(self.readers)),
            "cov_method": self.cov_method,
            "alpha": self.alpha,
            "aucs": _jsonable(self.aucs),
            "components": _jsonable(dataclasses.asdict(self.components)),
            "components_by_test": _jsonable(self.components_by_test),
            "rrrc": None if self.rrrc is None else self.rrrc.to_dict(),
            "frrc": self.frrc.to_dict(),
            "rrfc": None if self.rrfc is None else self.rrfc.to_dict(),
            "covariance": {
                "labels": _jsonable([list(k) for k in cov.index]),
                "matrix": _jsonable(cov.to_numpy()),
            },
        }

    def summary(self) -> str:
        """Readable fixed-width report of all analyses."""
        return _summary(self)

    def __str__(self) -> str:  # print(result) shows the report
        return self.summary()


# =========================================================================== API
def mrmc(
    data: pd.DataFrame,
    *,
    reader: str = "reader",
    test: str = "test",
    case: str = "case",
    truth: str = "truth",
    rating: str = "rating",
    cluster: str | None = None,
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> MRMCResult:
    """Obuchowski–Rockette MRMC analysis of empirical AUCs with Hillis df.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per reader × test × case, fully crossed.
    reader, test, case, truth, rating : str
        Column names. ``truth`` is 0/1 and constant within a case; ``rating``
        is numeric, higher meaning truth 1 more likely. The order of tests is
        the category order when ``test`` is an (ordered or not) categorical
        column, else the sorted order; differences are earlier minus later.
    cluster : str, optional
        Column of cluster (patient) ids, constant within a case. Given, the
        jackknife leaves out one cluster at a time and the DeLong covariance
        becomes Obuchowski's clustered estimator.
    cov_method : {"jackknife", "delong"}
        Estimator of the covariance matrix of the reader × test AUCs.
    alpha : float
        Confidence intervals have coverage ``1 - alpha``.

    Returns
    -------
    MRMCResult

    Raises
    ------
    ValueError
        On a missing column, non-binary or inconsistent truth, missing or
        non-numeric ratings, duplicate or missing reader × test × case cells,
        fewer than two tests, or too few positive/negative cases (clusters).

    Notes
    -----
    RRRC: ``F = MS(T) / [MS(T*R) + r·max(Cov2 - Cov3, 0)]`` with df
    ``(t - 1, ddf_H)``, ``ddf_H = [MS(T*R) + r·max(Cov2 - Cov3, 0)]² /
    [MS(T*R)² / ((t-1)(r-1))]``; a test's own mean AUC has SE
    ``sqrt(MS(R)_i / r + max(Cov2_i, 0))`` with its own Hillis df. FRRC:
    ``χ² = (t-1) MS(T) / [Var - Cov1 + (r-1)·max(Cov2 - Cov3, 0)]`` (truncated
    as in OR-DBM MRMC; MRMCaov does not truncate here). RRFC:
    ``F = MS(T) / MS(T*R)`` on ``(t-1, (t-1)(r-1))`` df. Pairwise differences
    use the pooled denominators, as MRMCaov and OR-DBM MRMC do.

    Examples
    --------
    >>> res = mrmc(df, test="treatment")                       # doctest: +SKIP
    >>> print(res.summary())                                   # doctest: +SKIP
    >>> res.rrrc.differences                                   # doctest: +SKIP
    """
    alpha = check_alpha(alpha)
    cov_method = check_choice(cov_method, "cov_method", COV_METHODS)
    design = _design(data, reader=reader, test=test, case=case, truth=truth,
                     rating=rating, cluster=cluster)
    t, r = len(design.tests), len(design.readers)
    scores = design.ratings.reshape(t * r, -1)

    v10, v01, auc = _structural_components(scores, design.truth)
    groups = design.clusters
    n_groups = int(groups.max()) + 1
    pos = design.truth == 1
    if cov_method == "jackknife":
        cov = _jackknife_cov(scores, pos, v10, v01, auc, groups, n_groups)
    elif cluster is None:
        cov = delong_covariance(design.truth, scores)
    else:
        # Obuchowski (1997): DeLong's placement values summed within patients.
        cov = clustered_auc_covariance(design.truth, scores, groups)

    theta = auc.reshape(t, r)
    comps, per_test = _or_components(theta, cov, t, r, cov_method)

    index = pd.MultiIndex.from_product([design.tests, design.readers],
                                       names=[test, reader])
    covariance = pd.DataFrame(cov, index=index, columns=index)
    aucs = pd.DataFrame({
        "test": np.repeat(np.array(design.tests, dtype=object), r),
        "reader": np.tile(np.array(design.readers, dtype=object), t),
        "auc": auc,
        "se": np.sqrt(np.clip(np.diag(cov), 0.0, None)),
    })

    frrc = _frrc(theta, cov, comps, per_test, design, alpha)
    rrrc = _rrrc(theta, comps, per_test, design, alpha) if r >= 2 else None
    rrfc = _rrfc(theta, comps, per_test, design, alpha) if r >= 2 else None

    return MRMCResult(
        aucs=aucs,
        components=comps,
        rrrc=rrrc,
        frrc=frrc,
        rrfc=rrfc,
        components_by_test=pd.DataFrame({
            "test": pd.Series(design.tests, dtype=object),
            "var_error": per_test.var,
            "cov2": per_test.cov2,
            "ms_r": per_test.ms_r,
        }),
        covariance=covariance,
        tests=tuple(design.tests),
        readers=tuple(design.readers),
        n_cases=int(design.truth.size),
        n_positive=int(pos.sum()),
        n_negative=int((~pos).sum()),
        n_clusters=n_groups if cluster is not None else None,
        cov_method=cov_method,
        alpha=alpha,
    )


def model_vs_readers(
    model_scores: pd.DataFrame,
    readings: pd.DataFrame,
    *,
    case: str = "case",
    truth: str = "truth",
    prob: str = "prob",
    reader: str = "reader",
    rating: str = "rating",
    cluster: str | None = None,
    model_label: str = "model",
    readers_label: str = "readers",
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> MRMCResult:
    """Compare a model with a panel of readers by OR MRMC analysis.

    The model enters as a test whose rating is its probability, identical for
    every reader, so its reader × test AUCs are all equal and its variance
    enters through the case covariances only (Cov2 of the model equals its
    AUC variance). Differences are reported as model minus readers.

    Parameters
    ----------
    model_scores : pandas.DataFrame
        One row per case with columns ``case``, ``truth``, ``prob`` and, when
        ``cluster`` is given, the cluster (patient) id.
    readings : pandas.DataFrame
        One row per reader × case with columns ``reader``, ``case``,
        ``rating``; every reader must read every case of ``model_scores``.
    case, truth, prob, reader, rating, cluster : str
        Column names.
    model_label, readers_label : str
        Names of the two tests in the result.
    cov_method, alpha
        As in :func:`mrmc`.

    Returns
    -------
    MRMCResult
        With ``tests == (model_label, readers_label)``.

    Raises
    ------
    ValueError
        On missing columns, duplicated cases or readings, or cases present in
        one table and not the other (the OR analysis needs a complete design).
    """
    if not isinstance(model_scores, pd.DataFrame):
        raise TypeError("`model_scores` must be a pandas DataFrame.")
    if not isinstance(readings, pd.DataFrame):
        raise TypeError("`readings` must be a pandas DataFrame.")
    if model_label == readers_label:
        raise ValueError("`model_label` and `readers_label` must differ.")
    model_cols = [case, truth, prob] + ([cluster] if cluster is not None else [])
    _require_columns(model_scores, model_cols, "model_scores")
    _require_columns(readings, [reader, case, rating], "readings")

    dup = model_scores[case].duplicated()
    if dup.any():
        raise ValueError(
            f"`model_scores` must have one row per case; {int(dup.sum())} duplicated "
            f"value(s) in column '{case}', e.g. {model_scores.loc[dup, case].iloc[0]!r}."
        )
    model_cases = pd.Index(model_scores[case].unique())
    read_cases = pd.Index(readings[case].unique())
    unread = model_cases.difference(read_cases)
    unscored = read_cases.difference(model_cases)
    if len(unread) or len(unscored):
        raise ValueError(
            "MRMC needs the same cases in `model_scores` and `readings`: "
            f"{len(unread)} case(s) have a model score but no reading "
            f"{_examples(unread)}, {len(unscored)} case(s) have readings but no "
            f"model score {_examples(unscored)}."
        )

    base = model_scores[model_cols].rename(columns={case: "case", truth: "truth"})
    if cluster is not None:
        base = base.rename(columns={cluster: "cluster"})
    readers_df = readings[[reader, case, rating]].rename(
        columns={reader: "reader", case: "case", rating: "rating"})
    readers_df = readers_df.merge(base.drop(columns=[prob]), on="case", how="left")
    reader_ids = pd.unique(readings[reader])
    model_df = base.rename(columns={prob: "rating"}).merge(
        pd.DataFrame({"reader": reader_ids}), how="cross")
    long = pd.concat(
        [model_df.assign(test=model_label), readers_df.assign(test=readers_label)],
        ignore_index=True,
    )
    long["test"] = pd.Categorical(long["test"], categories=[model_label, readers_label])
    return mrmc(long, reader="reader", test="test", case="case", truth="truth",
                rating="rating", cluster="cluster" if cluster is not None else None,
                cov_method=cov_method, alpha=alpha)


# =========================================================================== design
@dataclass(frozen=True)
class _Design:
    tests: list
    readers: list
    ratings: np.ndarray  # (t, r, c)
    truth: np.ndarray  # (c,) int8
    clusters: np.ndarray  # (c,) codes 0..G-1 (one per case when unclustered)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"`{name}` has no column(s) {', '.join(repr(c) for c in missing)}; "
            f"available columns: {', '.join(repr(str(c)) for c in df.columns)}."
        )


def _examples(values: Sequence, k: int = 3) -> str:
    values = list(values)
    if not values:
        return ""
    more = ", ..." if len(values) > k else ""
    return "(e.g. " + ", ".join(repr(_native(v)) for v in values[:k]) + more + ")"


def _levels(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().unique())
        return [c for c in series.cat.categories if c in present]
    uniq = list(pd.unique(series))
    try:
        return sorted(uniq)
    except TypeError:  # mixed, unorderable labels: keep first appearance
        return uniq


def _design(data, *, reader, test, case, truth, rating, cluster) -> _Design:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame, got {type(data).__name__}.")
    cols = [reader, test, case, truth, rating] + ([cluster] if cluster is not None else [])
    roles = {"reader": reader, "test": test, "case": case, "truth": truth, "rating": rating}
    if len(set(roles.values())) < len(roles):
        raise ValueError(f"The column arguments must name different columns, got {roles}.")
    _require_columns(data, cols, "data")
    if data.empty:
        raise ValueError("`data` has no rows.")
    df = data[list(dict.fromkeys(cols))]  # cluster may be the case column itself
    for col in (reader, test, case) + ((cluster,) if cluster is not None else ()):
        n_na = int(df[col].isna().sum())
        if n_na:
            raise ValueError(f"Column '{col}' has {n_na} missing value(s).")

    ratings = pd.to_numeric(df[rating], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(ratings)
    if bad.any():
        first = df[rating].iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"Column '{rating}' must hold finite numbers; {int(bad.sum())} row(s) are "
            f"missing or non-numeric (e.g. {_native(first)!r})."
        )
    truth_num = pd.to_numeric(df[truth], errors="coerce")
    if truth_num.isna().any() or not truth_num.isin([0, 1]).all():
        odd = df.loc[truth_num.isna() | ~truth_num.isin([0, 1]), truth].unique()[:5]
        raise ValueError(
            f"Column '{truth}' must be binary (0/1); found other value(s) "
            f"{[_native(v) for v in odd]}."
        )

    dup = df.duplicated([reader, test, case])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise ValueError(
            f"{int(dup.sum())} duplicated reader × test × case row(s), e.g. "
            f"{reader}={_native(row[reader])!r}, {test}={_native(row[test])!r}, "
            f"{case}={_native(row[case])!r}."
        )

    per_case = pd.DataFrame({"case": df[case].to_numpy(), "truth": truth_num.to_numpy()})
    if cluster is not None:
        per_case["cluster"] = df[cluster].to_numpy()
    for col, label in (("truth", truth), ("cluster", cluster)):
        if col not in per_case:
            continue
        n_val = per_case.groupby("case", sort=False)[col].nunique()
        if (n_val > 1).any():
            raise ValueError(
                f"Column '{label}' must be constant within each case; "
                f"{int((n_val > 1).sum())} case(s) disagree, e.g. case "
                f"{_native(n_val.index[n_val > 1][0])!r}."
            )

    tests, readers, cases = _levels(df[test]), _levels(df[reader]), _levels(df[case])
    t, r, c = len(tests), len(readers), len(cases)
    if t < 2:
        raise ValueError(
            f"MRMC compares tests: column '{test}' needs at least 2 levels, found {t}."
        )
    if len(df) != t * r * c:
        ti = pd.Categorical(df[test], categories=tests).codes
        ri = pd.Categorical(df[reader], categories=readers).codes
        ci = pd.Categorical(df[case], categories=cases).codes
        filled = np.zeros((t, r, c), dtype=bool)
        filled[ti, ri, ci] = True
        missing = np.argwhere(~filled)
        i, j, k = missing[0]
        raise ValueError(
            "The OR analysis needs a fully crossed design (every reader reads every "
            f"case under every test): {len(missing)} of {t * r * c} reader × test × "
            f"case cells are missing, e.g. {reader}={_native(readers[j])!r}, "
            f"{test}={_native(tests[i])!r}, {case}={_native(cases[k])!r}."
        )

    ti = pd.Categorical(df[test], categories=tests).codes
    ri = pd.Categorical(df[reader], categories=readers).codes
    ci = pd.Categorical(df[case], categories=cases).codes
    grid = np.empty((t, r, c))
    grid[ti, ri, ci] = ratings

    first = per_case.drop_duplicates("case").set_index("case").reindex(cases)
    truth_arr = first["truth"].to_numpy().astype(np.int8)
    n_pos = int(truth_arr.sum())
    if n_pos == 0 or n_pos == c:
        raise ValueError(
            f"Column '{truth}' must contain both classes; all {c} cases are {int(truth_arr[0])}."
        )
    if cluster is not None:
        groups = pd.factorize(first["cluster"].to_numpy())[0].astype(np.intp)
    else:
        groups = np.arange(c, dtype=np.intp)
    return _Design(tests=tests, readers=readers, ratings=grid, truth=truth_arr,
                   clusters=groups)


# =========================================================================== estimation
def _structural_components(scores: np.ndarray, truth: np.ndarray):
    """DeLong placement values by midranks (Sun & Xu 2014), vectorised over rows.

    ``v10[k, a]`` is the fraction of negatives rated below positive ``a`` (ties
    one half); ``v01[k, b]`` the fraction of positives rated above negative ``b``.
    """
    pos = truth == 1
    m, n = int(pos.sum()), int((~pos).sum())
    rank_all = stats.rankdata(scores, axis=1)
    v10 = (rank_all[:, pos] - stats.rankdata(scores[:, pos], axis=1)) / n
    v01 = 1.0 - (rank_all[:, ~pos] - stats.rankdata(scores[:, ~pos], axis=1)) / m
    return v10, v01, v10.mean(axis=1)


def _sum_by_group(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``values`` (k × N) per group label, as a k × n_groups array."""
    out = np.zeros((values.shape[0], n_groups))
    if groups.size == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    out[:, g_sorted[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
    return out


def _jackknife_cov(scores, pos, v10, v01, auc, groups, n_groups):
    """Delete-one-cluster jackknife covariance of the AUCs (clusters = cases by default).

    Leaving out cluster g removes its positives' rows and negatives' columns of
    the m × n kernel matrix; the kernel entries pairing a positive and a negative
    of the same cluster were removed twice and are added back. This gives every
    leave-one-out AUC in O(k·N) instead of refitting N times.
    """
    m, n = v10.shape[1], v01.shape[1]
    g_pos, g_neg = groups[pos], groups[~pos]
    m_g = np.bincount(g_pos, minlength=n_groups)
    n_g = np.bincount(g_neg, minlength=n_groups)
    if np.any(m_g == m) or np.any(n_g == n):
        raise ValueError(
            "The jackknife needs positive and negative cases outside every left-out "
            "unit: one cluster holds all positive or all negative cases."
        )
    within = _within_cluster_kernel(scores, pos, g_pos, g_neg, n_groups)
    num = (m * n * auc)[:, None] - n * _sum_by_group(v10, g_pos, n_groups) \
        - m * _sum_by_group(v01, g_neg, n_groups) + within
    loo = num / ((m - m_g) * (n - n_g))
    dev = loo - loo.mean(axis=1, keepdims=True)
    return (n_groups - 1) / n_groups * (dev @ dev.T)


def _within_cluster_kernel(scores, pos, g_pos, g_neg, n_groups):
    """Per cluster, the sum of ψ(positive, negative) over pairs inside the cluster."""
    if n_groups == pos.size:  # one case per cluster: no within-cluster pairs
        return np.zeros((scores.shape[0], n_groups))
    pairs = pd.DataFrame({"g": g_pos, "a": np.arange(g_pos.size)}).merge(
        pd.DataFrame({"g": g_neg, "b": np.arange(g_neg.size)}), on="g")
    if pairs.empty:
        return np.zeros((scores.shape[0], n_groups))
    xa = scores[:, pos][:, pairs["a"].to_numpy()]
    xb = scores[:, ~pos][:, pairs["b"].to_numpy()]
    psi = (xa > xb) + 0.5 * (xa == xb)
    return _sum_by_group(psi, pairs["g"].to_numpy(), n_groups)


@dataclass(frozen=True)
class _PerTest:
    var: np.ndarray  # (t,) mean AUC variance within test
    cov2: np.ndarray  # (t,) mean covariance of different readers within test
    ms_r: np.ndarray  # (t,) reader mean square within test


def _or_components(theta, cov, t, r, cov_method):
    test_idx = np.repeat(np.arange(t), r)
    reader_idx = np.tile(np.arange(r), t)
    same_t = test_idx[:, None] == test_idx[None, :]
    same_r = reader_idx[:, None] == reader_idx[None, :]

    def mean_of(mask):
        return float(cov[mask].mean()) if mask.any() else math.nan

    var_error = float(np.diag(cov).mean())
    cov1 = mean_of(~same_t & same_r)
    cov2 = mean_of(same_t & ~same_r)
    cov3 = mean_of(~same_t & ~same_r)

    mean_t = theta.mean(axis=1)
    mean_r = theta.mean(axis=0)
    grand = theta.mean()
    ms_t = r * float(np.sum((mean_t - grand) ** 2)) / (t - 1)
    if r >= 2:
        ms_r = t * float(np.sum((mean_r - grand) ** 2)) / (r - 1)
        resid = theta - mean_t[:, None] - mean_r[None, :] + grand
        ms_tr = float(np.sum(resid ** 2)) / ((t - 1) * (r - 1))
        ms_r_i = np.sum((theta - mean_t[:, None]) ** 2, axis=1) / (r - 1)
    else:
        ms_r = ms_tr = math.nan
        ms_r_i = np.full(t, math.nan)

    blocks = cov.reshape(t, r, t, r)
    within = blocks[np.arange(t), :, np.arange(t), :]  # (t, r, r)
    var_i = np.einsum("ijj->i", within) / r
    if r >= 2:
        cov2_i = (within.sum(axis=(1, 2)) - var_i * r) / (r * (r - 1))
    else:
        cov2_i = np.full(t, math.nan)
    comps = ORComponents(var_error=var_error, cov1=cov1, cov2=cov2, cov3=cov3,
                         ms_t=ms_t, ms_r=ms_r, ms_tr=ms_tr, cov_method=cov_method)
    return comps, _PerTest(var=var_i, cov2=cov2_i, ms_r=ms_r_i)


# =========================================================================== analyses
def _pairs(levels):
    return list(itertools.combinations(range(len(levels)), 2))


def _t_or_normal_sf(x: float, df: float) -> float:
    if math.isnan(x) or math.isnan(df):
        return math.nan
    return float(stats.norm.sf(x) if math.isinf(df) else stats.t.sf(x, df))


def _t_or_normal_ppf(q: float, df: float) -> float:
    if math.isnan(df):
        return math.nan
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _hillis_df(den: float, ms: float, df_ms: float) -> float:
    """Satterthwaite-type df of Hillis (2007): den² / (ms² / df_ms)."""
    if math.isnan(den) or math.isnan(ms) or den <= 0:
        return math.nan
    if ms == 0:
        return math.inf
    return den ** 2 / (ms ** 2 / df_ms)


def _difference_table(theta, tests, se, df, alpha):
    mean_t = theta.mean(axis=1)
    rows = []
    q = _t_or_normal_ppf(1 - alpha / 2, df)
    for i, j in _pairs(tests):
        est = float(mean_t[i] - mean_t[j])
        stat = _ratio(est, se) if se > 0 else math.nan
        p = 2 * _t_or_normal_sf(abs(stat), df) if not math.isnan(stat) else math.nan
        rows.append({
            "test_a": tests[i], "test_b": tests[j], "estimate": est, "se": se,
            "df": df, "statistic": stat, "p_value": p,
            "ci_low": est - q * se, "ci_high": est + q * se,
        })
    return pd.DataFrame(rows, columns=["test_a", "test_b", "estimate", "se", "df",
                                       "statistic", "p_value", "ci_low", "ci_high"])


def _test_table(theta, tests, se, df, alpha):
    mean_t = theta.mean(axis=1)
    q = np.array([_t_or_normal_ppf(1 - alpha / 2, d) for d in df])
    return pd.DataFrame({
        "test": pd.Series(tests, dtype=object),
        "auc": mean_t,
        "se": se,
        "df": df,
        # AUCs live in [0, 1]; MRMCaov clips the single-test intervals likewise.
        "ci_low": np.clip(mean_t - q * se, 0.0, 1.0),
        "ci_high": np.clip(mean_t + q * se, 0.0, 1.0),
    })


def _global_f(stat, df1, df2):
    if math.isnan(stat) or math.isnan(df2):
        return math.nan
    if math.isinf(df2):  # F(df1, ∞) · df1 is chi-square(df1)
        return float(stats.chi2.sf(stat * df1, df1))
    return float(stats.f.sf(stat, df1, df2))


def _rrrc(theta, comps, per_test, design, alpha):
    t, r = theta.shape
    den = comps.ms_tr + r * max(comps.cov2 - comps.cov3, 0.0)
    df2 = _hillis_df(den, comps.ms_tr, (t - 1) * (r - 1))
    stat = _ratio(comps.ms_t, den)
    se_diff = math.sqrt(2.0 / r * den) if den >= 0 else math.nan
    test_den = per_test.ms_r + r * np.maximum(per_test.cov2, 0.0)
    test_se = np.sqrt(test_den / r)
    test_df = np.array([_hillis_df(d, ms, r - 1) for d, ms in zip(test_den, per_test.ms_r)])
    return MRMCAnalysis(
        name="rrrc", description=_ANALYSES["rrrc"], statistic_name="F",
        statistic=stat, df1=float(t - 1), df2=df2,
        p_value=_global_f(stat, t - 1, df2), denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, df2, alpha),
        tests=_test_table(theta, design.tests, test_se, test_df, alpha),
    )


def _frrc(theta, cov, comps, per_test, design, alpha):
    t, r = theta.shape
    # Truncated as in Hillis' OR-DBM MRMC (MRMCaov leaves Cov2 - Cov3 as is);
    # the two agree whenever Cov2 >= Cov3.
    between = (r - 1) * max(comps.cov2 - comps.cov3, 0.0) if r >= 2 else 0.0
    den = comps.var_error - comps.cov1 + between
    stat = _ratio((t - 1) * comps.ms_t, den)
    p = float(stats.chi2.sf(stat, t - 1)) if not math.isnan(stat) else math.nan
    se_diff = math.sqrt(2.0 / r * den) if den >= 0 else math.nan
    cov2_term = (r - 1) * np.maximum(per_test.cov2, 0.0) if r >= 2 else 0.0
    test_se = np.sqrt((per_test.var + cov2_term) / r)

    # Per reader: the exact variance of that reader's difference from the AUC
    # covariance matrix (equal to MRMCaov's 2(Var_j - Cov1_j) when t = 2).
    q = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for j, rd in enumerate(design.readers):
        for a, b in _pairs(design.tests):
            ka, kb = a * r + j, b * r + j
            est = float(theta[a, j] - theta[b, j])
            var = cov[ka, ka] + cov[kb, kb] - 2 * cov[ka, kb]
            se = math.sqrt(var) if var > 0 else 0.0
            z = est / se if se > 0 else math.nan
            rows.append({
                "reader": rd, "test_a": design.tests[a], "test_b": design.tests[b],
                "estimate": est, "se": se, "statistic": z,
                "p_value": float(2 * stats.norm.sf(abs(z))) if se > 0 else math.nan,
                "ci_low": est - q * se, "ci_high": est + q * se,
            })
    reader_diffs = pd.DataFrame(rows, columns=["reader", "test_a", "test_b", "estimate",
                                               "se", "statistic", "p_value", "ci_low",
                                               "ci_high"])
    return MRMCAnalysis(
        name="frrc", description=_ANALYSES["frrc"], statistic_name="chi2",
        statistic=stat, df1=float(t - 1), df2=None, p_value=p, denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, math.inf, alpha),
        tests=_test_table(theta, design.tests, test_se, np.full(t, math.inf), alpha),
        reader_differences=reader_diffs,
    )


def _rrfc(theta, comps, per_test, design, alpha):
    t, r = theta.shape
    df2 = float((t - 1) * (r - 1))
    den = comps.ms_tr
    stat = _ratio(comps.ms_t, den)
    se_diff = math.sqrt(2.0 / r * den)
    return MRMCAnalysis(
        name="rrfc", description=_ANALYSES["rrfc"], statistic_name="F",
        statistic=stat, df1=float(t - 1), df2=df2,
        p_value=_global_f(stat, t - 1, df2), denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, df2, alpha),
        tests=_test_table(theta, design.tests, np.sqrt(per_test.ms_r / r),
                          np.full(t, float(r - 1)), alpha),
    )


# =========================================================================== output
def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value: Any) -> Any:
    """Plain Python objects for json.dumps; NaN/inf become None (not valid JSON)."""
    if isinstance(value, pd.DataFrame):
        return [{str(k): _jsonable(v) for k, v in row.items()}
                for row in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    value = _native(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


def _fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "NA"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) for i, h in
              enumerate(header)]
    lines = [indent + "  ".join(str(h).rjust(w) for h, w in zip(header, widths))]
    lines.append(indent + "  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(indent + "  ".join(str(c).rjust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def _summary(res: MRMCResult) -> str:
    pct = f"{100 * (1 - res.alpha):g}%"
    unit = ("cases" if res.n_clusters is None else f"{res.n_clusters} clusters (patients)")
    how = ("jackknife over " + unit if res.cov_method == "jackknife"
           else "DeLong" if res.n_clusters is None
           else f"Obuchowski clustered DeLong over {unit}")
    out = [
        "Multi-reader multi-case ROC analysis (Obuchowski-Rockette, Hillis df)",
        f"Cases: {res.n_cases} ({res.n_positive} positive, {res.n_negative} negative)"
        + (f" in {res.n_clusters} clusters" if res.n_clusters is not None else "")
        + f"; readers: {len(res.readers)}; tests: {len(res.tests)}",
        f"AUC: empirical (trapezoidal); covariance: {how}",
        "",
        "Reader AUCs",
    ]
    theta = res.aucs["auc"].to_numpy().reshape(len(res.tests), len(res.readers))
    header = ["reader"] + [str(t) for t in res.tests]
    rows = [[str(rd)] + [_fmt(theta[i, j], ".8f") for i in range(len(res.tests))]
            for j, rd in enumerate(res.readers)]
    rows.append(["mean"] + [_fmt(v, ".8f") for v in theta.mean(axis=1)])
    out += [_table(header, rows), ""]

    c = res.components
    out += [
        "OR variance components",
        _table(["Var(error)", "Cov1", "Cov2", "Cov3", "MS(T)", "MS(R)", "MS(T*R)"],
               [[_fmt(v, ".8f") for v in (c.var_error, c.cov1, c.cov2, c.cov3,
                                          c.ms_t, c.ms_r, c.ms_tr)]]),
        "",
    ]
    if res.rrrc is None:
        out += ["(One reader: only the fixed-readers analysis applies.)", ""]
    for a in res.analyses():
        if a.statistic_name == "F":
            head = (f"F = {_fmt(a.statistic, '.6g')}, df = ({_fmt(a.df1, 'g')}, "
                    f"{_fmt(a.df2, '.4f')}), p = {_fmt_p(a.p_value)}")
        else:
            head = (f"chi2 = {_fmt(a.statistic, '.6g')}, df = {_fmt(a.df1, 'g')}, "
                    f"p = {_fmt_p(a.p_value)}")
        stat_col = "z" if a.name == "frrc" else "t"
        diff_rows = [[f"{_native(d.test_a)} - {_native(d.test_b)}",
                      _fmt(d.estimate, ".8f"), _fmt(d.se, ".8f"), _fmt(d.df, ".2f"),
                      _fmt(d.statistic, ".4f"), _fmt_p(d.p_value),
                      _fmt(d.ci_low, ".8f"), _fmt(d.ci_high, ".8f")]
                     for d in a.differences.itertuples()]
        test_rows = [[str(_native(s.test)), _fmt(s.auc, ".8f"), _fmt(s.se, ".8f"),
                      _fmt(s.df, ".2f"), _fmt(s.ci_low, ".8f"), _fmt(s.ci_high, ".8f")]
                     for s in a.tests.itertuples()]
        out += [
            f"{a.description[0].upper()}{a.description[1:]} ({a.name.upper()})",
            f"  Test of equal AUCs: {head}",
            _table(["difference", "estimate", "SE", "df", stat_col, "p",
                    f"{pct} CI low", "high"], diff_rows),
            _table(["test", "AUC", "SE", "df", f"{pct} CI low", "high"], test_rows),
        ]
        if a.reader_differences is not None and len(res.readers) > 0:
            rd_rows = [[str(_native(d.reader)), f"{_native(d.test_a)} - {_native(d.test_b)}",
                        _fmt(d.estimate, ".8f"), _fmt(d.se, ".8f"),
                        _fmt(d.statistic, ".4f"), _fmt_p(d.p_value),
                        _fmt(d.ci_low, ".8f"), _fmt(d.ci_high, ".8f")]
                       for d in a.reader_differences.itertuples()]
            out += ["  Per reader:",
                    _table(["reader", "difference", "estimate", "SE", "z", "p",
                            f"{pct} CI low", "high"], rd_rows)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
