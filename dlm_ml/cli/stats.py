"""``dlm-stats``: the statistics of :mod:`dlm_ml.stats` on CSV files.

Sub-commands::

    dlm-stats mrmc  RATINGS.csv [--reader-col reader] [--test-col test] [--case-col case]
                    [--truth-col truth] [--rating-col rating] [--cluster-col C]
                    [--cov jackknife|delong] [--alpha 0.05] [--json]
    dlm-stats delong DATA.csv --truth-col T --score-a A --score-b B [--cluster-col C]
                    [--positive VALUE]
                    [--alternative two-sided|greater|less] [--alpha 0.05] [--json]
    dlm-stats dca   DATA.csv --truth-col T --score-col S [--score-col S2 ...]
                    [--thresholds 0.01:0.99:0.01] [--json]
    dlm-stats kappa DATA.csv --rater-col A --rater-col B [--rater-col C ...]
                    [--weights linear|quadratic] [--alpha 0.05] [--json]
    dlm-stats kappa DATA.csv --subject-col S [--subject-col S2] --reader-col R
                    --rating-col X [--weights ...] [--json]

Readable fixed-width tables are printed by default, JSON with ``--json``. Bad
input (missing file or column, non-binary truth, non-numeric scores) prints one
message naming the file and column and exits with status 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm_ml.stats.agreement import cohen_kappa, fleiss_kappa
from dlm_ml.stats.clustered import clustered_auc, clustered_auc_difference
from dlm_ml.stats.decision import decision_curve
from dlm_ml.stats.mrmc import COV_METHODS, mrmc
from dlm_ml.stats.roc import delong_auc_ci, delong_test

__all__ = ["main"]

PROG = "dlm-stats"


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


# =========================================================================== helpers
def _read_csv(path: str, id_columns: Sequence[str] = ()) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"file not found: {path}")
    if p.is_dir():
        raise CLIError(f"{path} is a folder, not a CSV file")
    try:
        header = pd.read_csv(p, nrows=0).columns
        # Identifiers stay strings: "1.10" and "1.1" are different cases.
        dtype = {c: str for c in id_columns if c in header}
        return pd.read_csv(p, dtype=dtype)
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot be read as CSV ({exc})") from None


def _require(df: pd.DataFrame, path: str, columns: Sequence[str | None]) -> None:
    for col in columns:
        if col is not None and col not in df.columns:
            raise CLIError(
                f"{path}: no column '{col}'; available columns: "
                f"{', '.join(map(str, df.columns))}"
            )


def _truth(df: pd.DataFrame, path: str, col: str, positive: str | None = None) -> np.ndarray:
    raw = df[col]
    if positive is not None:
        if raw.isna().any():
            raise CLIError(f"{path}: column '{col}' has {int(raw.isna().sum())} missing value(s)")
        hit = raw.astype(str) == positive
        if not hit.any() or hit.all():
            raise CLIError(
                f"{path}: column '{col}' must hold the --positive value {positive!r} and at "
                f"least one other; values are {pd.unique(raw.astype(str))[:5].tolist()}"
            )
        return hit.to_numpy(dtype=np.int8)
    if raw.dtype == bool:
        return raw.to_numpy(dtype=np.int8)
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() | ~num.isin([0, 1])
    if bad.any():
        examples = pd.unique(raw[bad].astype(str))[:5].tolist()
        raise CLIError(
            f"{path}: column '{col}' must be binary (0/1); found {int(bad.sum())} other "
            f"value(s), e.g. {examples}"
        )
    if num.nunique() < 2:
        raise CLIError(f"{path}: column '{col}' must contain both 0 and 1; all values are "
                       f"{int(num.iloc[0])}")
    return num.to_numpy(dtype=np.int8)


def _scores(df: pd.DataFrame, path: str, col: str) -> np.ndarray:
    num = pd.to_numeric(df[col], errors="coerce")
    bad = ~np.isfinite(num.to_numpy(dtype=float))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CLIError(
            f"{path}: column '{col}' must be numeric; {int(bad.sum())} value(s) are missing "
            f"or non-numeric (first at data row {first + 1}: {df[col].iloc[first]!r})"
        )
    return num.to_numpy(dtype=float)


def _no_missing(df: pd.DataFrame, path: str, columns: Sequence[str]) -> None:
    for col in columns:
        n = int(df[col].isna().sum())
        if n:
            raise CLIError(f"{path}: column '{col}' has {n} missing value(s)")


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, frames to records."""
    if hasattr(value, "to_dict") and not isinstance(value, (pd.DataFrame, pd.Series, dict)):
        value = value.to_dict()
    if isinstance(value, pd.DataFrame):
        value = value.to_dict(orient="records")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _emit(obj: Any, text: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(text)


def _f(x: float, spec: str = ".6f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def _p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "NA"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    out = ["  " + "  ".join(h.rjust(w) for h, w in zip(header, widths)),
           "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


# =========================================================================== commands
def _cmd_mrmc(args: argparse.Namespace) -> None:
    ids = [args.case_col] + ([args.cluster_col] if args.cluster_col else [])
    df = _read_csv(args.file, ids)
    _require(df, args.file, [args.reader_col, args.test_col, args.case_col, args.truth_col,
                             args.rating_col, args.cluster_col])
    df[args.truth_col] = _truth(df, args.file, args.truth_col, args.positive)
    _scores(df, args.file, args.rating_col)
    try:
        res = mrmc(df, reader=args.reader_col, test=args.test_col, case=args.case_col,
                   truth=args.truth_col, rating=args.rating_col, cluster=args.cluster_col,
                   cov_method=args.cov, alpha=args.alpha)
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from None
    _emit(res.to_dict(), res.summary(), args.json)


def _cmd_delong(args: argparse.Namespace) -> None:
    ids = [args.cluster_col] if args.cluster_col else []
    df = _read_csv(args.file, ids)
    _require(df, args.file, [args.truth_col, args.score_a, args.score_b, args.cluster_col])
    truth = _truth(df, args.file, args.truth_col, args.positive)
    a = _scores(df, args.file, args.score_a)
    b = _scores(df, args.file, args.score_b)
    try:
        if args.cluster_col:
            _no_missing(df, args.file, [args.cluster_col])
            cl = df[args.cluster_col].to_numpy()
            test = clustered_auc_difference(truth, a, b, cl, alternative=args.alternative,
                                            alpha=args.alpha)
            single = [clustered_auc(truth, s, cl, alpha=args.alpha) for s in (a, b)]
            method = (f"Obuchowski (1997) clustered covariance, {test.n_clusters} clusters "
                      f"('{args.cluster_col}')")
        else:
            test = delong_test(truth, a, b, alternative=args.alternative, alpha=args.alpha)
            single = [delong_auc_ci(truth, s, alpha=args.alpha) for s in (a, b)]
            method = "DeLong (1988) paired covariance"
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from None

    pct = f"{100 * (1 - args.alpha):g}%"
    rows = [[name, _f(s.auc), _f(s.se), _f(s.ci_low), _f(s.ci_high)]
            for name, s in zip((args.score_a, args.score_b), single)]
    text = "\n".join([
        f"Paired comparison of AUCs: {args.score_a} vs {args.score_b}",
        f"Cases: {test.n_pos} positive, {test.n_neg} negative; truth column '{args.truth_col}'",
        f"Variance: {method}",
        "",
        _table(["score", "AUC", "SE", f"{pct} CI low", "high"], rows),
        "",
        _table(["difference", "estimate", "SE", "z", f"p ({test.alternative})",
                f"{pct} CI low", "high"],
               [[f"{args.score_a} - {args.score_b}", _f(test.diff), _f(test.se),
                 _f(test.z, ".4f"), _p(test.p_value), _f(test.ci_low), _f(test.ci_high)]]),
    ]) + "\n"
    obj = {"test": test, "aucs": {args.score_a: single[0], args.score_b: single[1]},
           "method": method}
    _emit(obj, text, args.json)


def _parse_thresholds(spec: str) -> np.ndarray:
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            # Rounded so that 0.01:0.99:0.01 gives exactly 0.25, as users expect.
            return np.round(start + step * np.arange(n), 12)
        return np.array([float(x) for x in spec.split(",") if x.strip()])
    except ValueError:
        raise CLIError(
            f"--thresholds must be START:STOP:STEP (e.g. 0.01:0.99:0.01) or a comma list, "
            f"got {spec!r}"
        ) from None


def _cmd_dca(args: argparse.Namespace) -> None:
    df = _read_csv(args.file)
    _require(df, args.file, [args.truth_col, *args.score_col])
    truth = _truth(df, args.file, args.truth_col, args.positive)
    preds = {c: _scores(df, args.file, c) for c in args.score_col}
    for col, values in preds.items():
        outside = (values < 0) | (values > 1)
        if outside.any():
            raise CLIError(
                f"{args.file}: column '{col}' must hold probabilities in [0, 1] (or 0/1 "
                f"calls); {int(outside.sum())} value(s) are outside, e.g. "
                f"{values[outside][:3].tolist()}"
            )
    th = _parse_thresholds(args.thresholds)
    try:
        curve = decision_curve(truth, preds, th, treat_all_label=args.treat_all_label,
                               treat_none_label=args.treat_none_label)
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from None
    wide = curve.pivot(index="threshold", columns="strategy", values="net_benefit")
    order = list(dict.fromkeys(curve["strategy"]))
    wide = wide[order]
    rows = [[_f(t, ".4f")] + [_f(v, ".6f") for v in wide.loc[t]] for t in wide.index]
    text = "\n".join([
        f"Decision curve: net benefit by threshold probability (n = {truth.size}, "
        f"{int(truth.sum())} events in '{args.truth_col}')",
        "Positive when predicted risk >= threshold; NB = TP/n - FP/n * pt/(1 - pt)",
        "",
        _table(["threshold", *map(str, order)], rows),
    ]) + "\n"
    _emit(curve, text, args.json)


def _kappa_wide(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.rater_col:
        if args.rating_col or args.reader_col or args.subject_col:
            raise CLIError("use either --rater-col (one column per rater) or "
                           "--subject-col/--reader-col/--rating-col (long table), not both")
        if len(args.rater_col) < 2:
            raise CLIError("give at least two --rater-col columns")
        df = _read_csv(args.file)
        _require(df, args.file, args.rater_col)
        _no_missing(df, args.file, args.rater_col)
        return df[args.rater_col], "columns " + ", ".join(args.rater_col)
    if not (args.rating_col and args.reader_col and args.subject_col):
        raise CLIError("give --rater-col twice or more, or all of --subject-col, "
                       "--reader-col and --rating-col")
    ids = [*args.subject_col, args.reader_col]
    df = _read_csv(args.file, args.subject_col)
    _require(df, args.file, [*ids, args.rating_col])
    _no_missing(df, args.file, [*ids, args.rating_col])
    dup = df.duplicated(ids)
    if dup.any():
        raise CLIError(f"{args.file}: {int(dup.sum())} duplicated subject x reader row(s) "
                       f"in columns {ids}")
    wide = df.pivot(index=args.subject_col, columns=args.reader_col, values=args.rating_col)
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        raise CLIError(
            f"{args.file}: {int(incomplete.sum())} of {len(wide)} subject(s) are not rated by "
            f"every reader in '{args.reader_col}'; kappa needs complete ratings"
        )
    wide.columns = [str(c) for c in wide.columns]
    if wide.shape[1] < 2:
        raise CLIError(f"{args.file}: column '{args.reader_col}' names only one reader")
    return wide, f"readers in '{args.reader_col}'"


def _cmd_kappa(args: argparse.Namespace) -> None:
    wide, what = _kappa_wide(args)
    raters = list(wide.columns)
    try:
        pairs = {f"{a} vs {b}": cohen_kappa(wide[a].to_numpy(), wide[b].to_numpy(),
                                            weights=args.weights, alpha=args.alpha)
                 for a, b in itertools.combinations(raters, 2)}
        fleiss = None
        if len(raters) > 2:
            long = wide.reset_index(drop=True).rename_axis("subject").reset_index().melt(
                id_vars="subject", var_name="rater", value_name="rating")
            fleiss = fleiss_kappa(long, alpha=args.alpha)
    except ValueError as exc:
        raise CLIError(f"{args.file}: {exc}") from None
    pct = f"{100 * (1 - args.alpha):g}%"
    if len(raters) == 2:
        text = f"Agreement of {what}\n" + next(iter(pairs.values())).summary()
        obj = {"cohen": next(iter(pairs.values()))}
    else:
        rows = [[name, _f(k.kappa, ".4f"), _f(k.se, ".4f"), _f(k.ci_low, ".4f"),
                 _f(k.ci_high, ".4f"), _p(k.p_value)] for name, k in pairs.items()]
        kind = "unweighted" if args.weights is None else f"{args.weights} weights"
        text = (f"Agreement of {what}\n" + fleiss.summary() + "\n"
                + f"Pairwise Cohen's kappa ({kind})\n"
                + _table(["pair", "kappa", "SE", f"{pct} CI low", "high", "p"], rows) + "\n")
        obj = {"fleiss": fleiss, "cohen_pairwise": [{"pair": k, **v.to_dict()}
                                                    for k, v in pairs.items()]}
    _emit(obj, text, args.json)


# =========================================================================== parser
def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``dlm-stats`` argument parser (exposed for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Statistics for comparing pCR models with radiologists, on CSV files.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def positive(p: argparse.ArgumentParser) -> None:
        p.add_argument("--positive", default=None, metavar="VALUE",
                       help="value of the truth column that means 1 (default: truth is 0/1)")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--alpha", type=_alpha, default=0.05,
                       help="1 - confidence level (default 0.05)")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser("mrmc", help="Obuchowski-Rockette MRMC analysis with Hillis df",
                       description="Multi-reader multi-case ROC analysis of a long table "
                                   "(one row per reader x test x case).")
    p.add_argument("file", metavar="RATINGS.csv")
    p.add_argument("--reader-col", default="reader")
    p.add_argument("--test-col", default="test")
    p.add_argument("--case-col", default="case")
    p.add_argument("--truth-col", default="truth")
    p.add_argument("--rating-col", default="rating")
    p.add_argument("--cluster-col", default=None,
                   help="patient id: jackknife/DeLong treat patients as the unit")
    p.add_argument("--cov", choices=COV_METHODS, default="jackknife",
                   help="covariance estimator (default jackknife)")
    positive(p)
    common(p)
    p.set_defaults(func=_cmd_mrmc)

    p = sub.add_parser("delong", help="paired DeLong test of two AUCs",
                       description="Paired comparison of two AUCs on the same cases: DeLong, "
                                   "or Obuchowski's clustered test with --cluster-col.")
    p.add_argument("file", metavar="DATA.csv")
    p.add_argument("--truth-col", required=True)
    p.add_argument("--score-a", required=True)
    p.add_argument("--score-b", required=True)
    p.add_argument("--cluster-col", default=None)
    p.add_argument("--alternative", choices=("two-sided", "greater", "less"),
                   default="two-sided", help='"greater": AUC(a) > AUC(b)')
    positive(p)
    common(p)
    p.set_defaults(func=_cmd_delong)

    p = sub.add_parser("dca", help="decision curves (net benefit)",
                       description="Net benefit of each score against treat all / treat none.")
    p.add_argument("file", metavar="DATA.csv")
    p.add_argument("--truth-col", required=True)
    p.add_argument("--score-col", action="append", required=True,
                   help="predicted probability column (repeat for several)")
    p.add_argument("--thresholds", default="0.01:0.99:0.01",
                   help="START:STOP:STEP or comma list (default 0.01:0.99:0.01)")
    p.add_argument("--treat-all-label", default="treat_all")
    p.add_argument("--treat-none-label", default="treat_none")
    positive(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_cmd_dca)

    p = sub.add_parser("kappa", help="Cohen's / Fleiss' kappa",
                       description="Agreement between raters: Cohen's kappa for two, Fleiss' "
                                   "kappa plus pairwise Cohen's kappa for three or more.")
    p.add_argument("file", metavar="DATA.csv")
    p.add_argument("--rater-col", action="append", default=[],
                   help="wide table: one column per rater (repeat)")
    p.add_argument("--subject-col", action="append", default=[],
                   help="long table: subject id column(s) (repeat for composite ids)")
    p.add_argument("--reader-col", default=None, help="long table: reader id column")
    p.add_argument("--rating-col", default=None, help="long table: rating column")
    p.add_argument("--weights", choices=("linear", "quadratic"), default=None,
                   help="weighted Cohen's kappa for ordinal ratings")
    common(p)
    p.set_defaults(func=_cmd_kappa)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlm-stats``; returns the exit status (0, or 2 on bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage or help
        return int(exc.code or 0)
    try:
        args.func(args)
    except CLIError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
