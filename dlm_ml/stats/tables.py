"""The statistics of :mod:`dlm_ml.stats` on tables: DataFrames and column names in, a result
and its fixed-width text out (what ``dlm-stats`` prints).

Bad input raises :class:`TableError` with one message naming the table (``where``, usually the
file) and the column: a missing column, a non-binary truth, non-numeric scores, an incomplete
design.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._output import fmt_num, fmt_p, text_table, to_plain
from ._table_columns import TableError, _no_missing, _require, _scores, _truth, parse_threshold_grid, read_table
from .agreement import cohen_kappa, fleiss_kappa
from .clustered import DEFAULT_CLUSTERED_AUC_CI, clustered_auc, clustered_auc_difference, describe_clustered_auc_ci
from .decision import decision_curve
from .mrmc import mrmc
from .roc import delong_auc_ci, delong_test

__all__ = ["TableError", "TableResult", "read_table", "parse_threshold_grid", "mrmc_table", "delong_table",
           "dca_table", "kappa_wide_from_columns", "kappa_wide_from_long", "kappa_table"]


@dataclass(frozen=True)
class TableResult:
    """A statistic computed on a table: ``value`` (result objects, frames) and ``text`` (printed)."""

    value: Any
    text: str

    def to_json(self) -> str:
        """Strict JSON (NaN and infinities as null)."""
        return json.dumps(to_plain(self.value), indent=2, allow_nan=False) + "\n"


def mrmc_table(df: pd.DataFrame, where: str, *, reader: str, test: str, case: str, truth: str, rating: str,
               cluster: str | None = None, positive: str | None = None, cov_method: str = "jackknife",
               alpha: float = 0.05) -> TableResult:
    """Obuchowski–Rockette MRMC analysis of a long table (one row per reader × test × case)."""
    _require(df, where, [reader, test, case, truth, rating, cluster])
    df = df.assign(**{truth: _truth(df, where, truth, positive)})
    _scores(df, where, rating)
    try:
        res = mrmc(df, reader=reader, test=test, case=case, truth=truth, rating=rating, cluster=cluster,
                   cov_method=cov_method, alpha=alpha)
    except ValueError as exc:
        raise TableError(f"{where}: {exc}") from None
    return TableResult(res, res.summary())


def delong_table(df: pd.DataFrame, where: str, *, truth: str, score_a: str, score_b: str,
                 cluster: str | None = None, positive: str | None = None, alternative: str = "two-sided",
                 alpha: float = 0.05, ci_method: str = DEFAULT_CLUSTERED_AUC_CI) -> TableResult:
    """Paired comparison of two AUCs: DeLong, or Obuchowski's clustered test with ``cluster``.

    ``ci_method`` chooses the interval of each AUC with ``cluster`` (see
    :func:`dlm_ml.stats.clustered_auc`); the text names the interval shown."""
    _require(df, where, [truth, score_a, score_b, cluster])
    t = _truth(df, where, truth, positive)
    a, b = _scores(df, where, score_a), _scores(df, where, score_b)
    try:
        if cluster:
            _no_missing(df, where, [cluster])
            cl = df[cluster].to_numpy()
            test = clustered_auc_difference(t, a, b, cl, alternative=alternative, alpha=alpha)
            single = [clustered_auc(t, s, cl, alpha=alpha, ci_method=ci_method) for s in (a, b)]
            method = f"Obuchowski (1997) clustered covariance, {test.n_clusters} clusters ('{cluster}')"
            auc_interval = single[0].ci_description
        else:
            test = delong_test(t, a, b, alternative=alternative, alpha=alpha)
            single = [delong_auc_ci(t, s, alpha=alpha) for s in (a, b)]
            method = "DeLong (1988) paired covariance"
            auc_interval = describe_clustered_auc_ci("normal")
    except ValueError as exc:
        raise TableError(f"{where}: {exc}") from None
    pct = f"{100 * (1 - alpha):g}%"
    rows = [[name, fmt_num(s.auc), fmt_num(s.se), fmt_num(s.ci_low), fmt_num(s.ci_high)]
            for name, s in zip((score_a, score_b), single)]
    text = "\n".join([
        f"Paired comparison of AUCs: {score_a} vs {score_b}",
        f"Cases: {test.n_pos} positive, {test.n_neg} negative; truth column '{truth}'",
        f"Variance: {method}",
        f"AUC intervals: {auc_interval}; difference: Wald, normal quantile",
        "",
        text_table(["score", "AUC", "SE", f"{pct} CI low", "high"], rows),
        "",
        text_table(["difference", "estimate", "SE", "z", f"p ({test.alternative})", f"{pct} CI low", "high"],
                   [[f"{score_a} - {score_b}", fmt_num(test.diff), fmt_num(test.se), fmt_num(test.z, ".4f"),
                     fmt_p(test.p_value), fmt_num(test.ci_low), fmt_num(test.ci_high)]]),
    ]) + "\n"
    return TableResult({"test": test, "aucs": {score_a: single[0], score_b: single[1]}, "method": method,
                        "auc_interval": auc_interval}, text)


def dca_table(df: pd.DataFrame, where: str, *, truth: str, scores: Sequence[str], thresholds,
              positive: str | None = None, treat_all_label: str = "treat_all",
              treat_none_label: str = "treat_none") -> TableResult:
    """Decision curves: net benefit of each score column against treat all / treat none."""
    _require(df, where, [truth, *scores])
    t = _truth(df, where, truth, positive)
    preds = {c: _scores(df, where, c) for c in scores}
    for col, values in preds.items():
        outside = (values < 0) | (values > 1)
        if outside.any():
            raise TableError(f"{where}: column '{col}' must hold probabilities in [0, 1] (or 0/1 calls); "
                             f"{int(outside.sum())} value(s) are outside, e.g. {values[outside][:3].tolist()}")
    try:
        curve = decision_curve(t, preds, thresholds, treat_all_label=treat_all_label,
                               treat_none_label=treat_none_label)
    except ValueError as exc:
        raise TableError(f"{where}: {exc}") from None
    order = list(dict.fromkeys(curve["strategy"]))
    wide = curve.pivot(index="threshold", columns="strategy", values="net_benefit")[order]
    rows = [[fmt_num(th, ".4f")] + [fmt_num(v, ".6f") for v in wide.loc[th]] for th in wide.index]
    text = "\n".join([
        f"Decision curve: net benefit by threshold probability (n = {t.size}, {int(t.sum())} events in '{truth}')",
        "Positive when predicted risk >= threshold; NB = TP/n - FP/n * pt/(1 - pt)",
        "",
        text_table(["threshold", *map(str, order)], rows),
    ]) + "\n"
    return TableResult(curve, text)


def kappa_wide_from_columns(df: pd.DataFrame, where: str, columns: Sequence[str]) -> pd.DataFrame:
    """The rater columns of a wide table (one column per rater), checked present and complete."""
    _require(df, where, columns)
    _no_missing(df, where, columns)
    return df[list(columns)]


def kappa_wide_from_long(df: pd.DataFrame, where: str, *, subjects: Sequence[str], reader: str,
                         rating: str) -> pd.DataFrame:
    """One column per reader from a long table (subject × reader rows); every subject rated by all."""
    ids = [*subjects, reader]
    _require(df, where, [*ids, rating])
    _no_missing(df, where, [*ids, rating])
    dup = df.duplicated(ids)
    if dup.any():
        raise TableError(f"{where}: {int(dup.sum())} duplicated subject x reader row(s) in columns {ids}")
    wide = df.pivot(index=list(subjects), columns=reader, values=rating)
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        raise TableError(f"{where}: {int(incomplete.sum())} of {len(wide)} subject(s) are not rated by every "
                         f"reader in '{reader}'; kappa needs complete ratings")
    wide.columns = [str(c) for c in wide.columns]
    if wide.shape[1] < 2:
        raise TableError(f"{where}: column '{reader}' names only one reader")
    return wide


def kappa_table(wide: pd.DataFrame, where: str, what: str, *, weights: str | None = None,
                alpha: float = 0.05, categories: Sequence | None = None) -> TableResult:
    """Cohen's kappa for two rater columns; Fleiss' kappa plus pairwise Cohen's for more.

    ``wide``: one column per rater, one row per subject, no missing ratings; ``what`` names
    the raters in the printed heading; ``categories``: every possible rating in order (default:
    those given), for Cohen's and Fleiss' kappa alike.
    """
    raters = list(wide.columns)
    try:
        pairs = {f"{a} vs {b}": cohen_kappa(wide[a].to_numpy(), wide[b].to_numpy(), weights=weights, alpha=alpha,
                                            categories=categories)
                 for a, b in itertools.combinations(raters, 2)}
        fleiss = None
        if len(raters) > 2:
            long = wide.reset_index(drop=True).rename_axis("subject").reset_index().melt(
                id_vars="subject", var_name="rater", value_name="rating")
            fleiss = fleiss_kappa(long, alpha=alpha, categories=categories)
    except ValueError as exc:
        raise TableError(f"{where}: {exc}") from None
    if len(raters) == 2:
        cohen = next(iter(pairs.values()))
        return TableResult({"cohen": cohen}, f"Agreement of {what}\n" + cohen.summary())
    pct = f"{100 * (1 - alpha):g}%"
    rows = [[name, fmt_num(k.kappa, ".4f"), fmt_num(k.se, ".4f"), fmt_num(k.ci_low, ".4f"),
             fmt_num(k.ci_high, ".4f"), fmt_p(k.p_value)] for name, k in pairs.items()]
    kind = "unweighted" if weights is None else f"{weights} weights"
    text = (f"Agreement of {what}\n" + fleiss.summary() + "\n" + f"Pairwise Cohen's kappa ({kind})\n"
            + text_table(["pair", "kappa", "SE", f"{pct} CI low", "high", "p"], rows) + "\n")
    return TableResult({"fleiss": fleiss, "cohen_pairwise": [{"pair": k, **v.to_dict()} for k, v in pairs.items()]},
                       text)


def categories_option(text: str | None, wide: pd.DataFrame, what: str) -> list | None:
    """A ``--categories`` option as labels of the ratings' type: numbers when every rater column is
    numeric, else text; ``TableError`` for an empty label or text among numeric ratings."""
    if text is None:
        return None
    labels = [label.strip() for label in text.split(",")]
    if "" in labels:
        raise TableError(f"--categories {text!r} has an empty label; give the ratings in order, e.g. 1,2,3,4,5")
    if not all(pd.api.types.is_numeric_dtype(wide[c]) for c in wide.columns):
        return labels
    numbers = pd.to_numeric(pd.Series(labels), errors="coerce")
    if numbers.isna().any():
        raise TableError(f"--categories: {labels[int(numbers.isna().argmax())]!r} is not a number, but the "
                         f"ratings of {what} are numbers")
    return [int(v) if float(v).is_integer() else float(v) for v in numbers]
