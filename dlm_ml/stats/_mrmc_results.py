"""Result objects of the MRMC analysis and their fixed-width report.

:class:`MRMCResult` holds the reader × test AUCs, the OR components and one
:class:`MRMCAnalysis` per analysis (RRRC, FRRC, RRFC); ``summary()`` prints them in the
layout of MRMCaov's report, ``to_dict()`` gives JSON values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._mrmc_design import _native
from ._output import fmt_num, fmt_p, text_table, to_plain

__all__: list[str] = []  # private module: dlm_ml.stats.mrmc is the public home


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
    note : str or None
        Why a figure needs reading with care; RRRC: set when Hillis' denominator df
        exceeds :data:`HILLIS_DF_NOTE_ABOVE` (or is infinite), because the reader × test
        interaction variance estimate is about 0 or negative (truncated) and the F test
        then approaches its normal (chi-square) reference.
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
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (NaN and infinities become ``None``)."""
        out = {
            f.name: to_plain(getattr(self, f.name))
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
            "tests": to_plain(list(self.tests)),
            "readers": to_plain(list(self.readers)),
            "cov_method": self.cov_method,
            "alpha": self.alpha,
            "aucs": to_plain(self.aucs),
            "components": to_plain(dataclasses.asdict(self.components)),
            "components_by_test": to_plain(self.components_by_test),
            "rrrc": None if self.rrrc is None else self.rrrc.to_dict(),
            "frrc": self.frrc.to_dict(),
            "rrfc": None if self.rrfc is None else self.rrfc.to_dict(),
            "covariance": {
                "labels": to_plain([list(k) for k in cov.index]),
                "matrix": to_plain(cov.to_numpy()),
            },
        }

    def summary(self) -> str:
        """Readable fixed-width report of all analyses."""
        return _summary(self)

    def __str__(self) -> str:  # print(result) shows the report
        return self.summary()


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
    rows = [[str(rd)] + [fmt_num(theta[i, j], ".8f") for i in range(len(res.tests))]
            for j, rd in enumerate(res.readers)]
    rows.append(["mean"] + [fmt_num(v, ".8f") for v in theta.mean(axis=1)])
    out += [text_table(header, rows), ""]

    c = res.components
    out += [
        "OR variance components",
        text_table(["Var(error)", "Cov1", "Cov2", "Cov3", "MS(T)", "MS(R)", "MS(T*R)"],
               [[fmt_num(v, ".8f") for v in (c.var_error, c.cov1, c.cov2, c.cov3,
                                          c.ms_t, c.ms_r, c.ms_tr)]]),
        "",
    ]
    if res.rrrc is None:
        out += ["(One reader: only the fixed-readers analysis applies.)", ""]
    for a in res.analyses():
        if a.statistic_name == "F":
            head = (f"F = {fmt_num(a.statistic, '.6g')}, df = ({fmt_num(a.df1, 'g')}, "
                    f"{fmt_num(a.df2, '.4f')}), p = {fmt_p(a.p_value)}")
        else:
            head = (f"chi2 = {fmt_num(a.statistic, '.6g')}, df = {fmt_num(a.df1, 'g')}, "
                    f"p = {fmt_p(a.p_value)}")
        stat_col = "z" if a.name == "frrc" else "t"
        diff_rows = [[f"{_native(d.test_a)} - {_native(d.test_b)}",
                      fmt_num(d.estimate, ".8f"), fmt_num(d.se, ".8f"), fmt_num(d.df, ".2f"),
                      fmt_num(d.statistic, ".4f"), fmt_p(d.p_value),
                      fmt_num(d.ci_low, ".8f"), fmt_num(d.ci_high, ".8f")]
                     for d in a.differences.itertuples()]
        test_rows = [[str(_native(s.test)), fmt_num(s.auc, ".8f"), fmt_num(s.se, ".8f"),
                      fmt_num(s.df, ".2f"), fmt_num(s.ci_low, ".8f"), fmt_num(s.ci_high, ".8f")]
                     for s in a.tests.itertuples()]
        out += [
            f"{a.description[0].upper()}{a.description[1:]} ({a.name.upper()})",
            f"  Test of equal AUCs: {head}",
            *([f"  Note: {a.note}"] if a.note else []),
            text_table(["difference", "estimate", "SE", "df", stat_col, "p",
                    f"{pct} CI low", "high"], diff_rows),
            text_table(["test", "AUC", "SE", "df", f"{pct} CI low", "high"], test_rows),
        ]
        if a.reader_differences is not None and len(res.readers) > 0:
            rd_rows = [[str(_native(d.reader)), f"{_native(d.test_a)} - {_native(d.test_b)}",
                        fmt_num(d.estimate, ".8f"), fmt_num(d.se, ".8f"),
                        fmt_num(d.statistic, ".4f"), fmt_p(d.p_value),
                        fmt_num(d.ci_low, ".8f"), fmt_num(d.ci_high, ".8f")]
                       for d in a.reader_differences.itertuples()]
            out += ["  Per reader:",
                    text_table(["reader", "difference", "estimate", "SE", "z", "p",
                            f"{pct} CI low", "high"], rd_rows)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
