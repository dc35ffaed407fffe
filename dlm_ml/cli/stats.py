"""``dlm-stats``: the statistics of :mod:`dlm_ml.stats` on CSV files — ``mrmc``, ``delong``, ``dca``,
``kappa`` (``dlm-stats COMMAND --help``). Tables are printed, JSON with ``--json``; bad input prints
one message naming the file and column and exits with status 2."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from dlm_ml.stats import tables
from dlm_ml.stats.agreement import InferredCategoriesWarning
from dlm_ml.stats.clustered import CLUSTERED_AUC_CI_METHODS, DEFAULT_CLUSTERED_AUC_CI
from dlm_ml.stats.mrmc import COV_METHODS
from dlm_ml.stats.tables import TableError, read_table

__all__ = ["main", "build_parser"]
PROG = "dlm-stats"


def _mrmc(a: argparse.Namespace) -> tables.TableResult:
    df = read_table(a.file, [a.case_col] + ([a.cluster_col] if a.cluster_col else []))
    return tables.mrmc_table(df, a.file, reader=a.reader_col, test=a.test_col, case=a.case_col, truth=a.truth_col,
                             rating=a.rating_col, cluster=a.cluster_col, positive=a.positive, cov_method=a.cov,
                             alpha=a.alpha)


def _delong(a: argparse.Namespace) -> tables.TableResult:
    if a.ci_method and not a.cluster_col:
        raise TableError("--ci-method chooses the interval of the clustered AUCs and needs --cluster-col; "
                         "without it each AUC has DeLong's Wald interval (as R's pROC)")
    df = read_table(a.file, [a.cluster_col] if a.cluster_col else [])
    return tables.delong_table(df, a.file, truth=a.truth_col, score_a=a.score_a, score_b=a.score_b,
                               cluster=a.cluster_col, positive=a.positive, alternative=a.alternative, alpha=a.alpha,
                               ci_method=a.ci_method or DEFAULT_CLUSTERED_AUC_CI)


def _dca(a: argparse.Namespace) -> tables.TableResult:
    try:
        thresholds = tables.parse_threshold_grid(a.thresholds)
    except ValueError as exc:
        raise TableError(f"--thresholds {exc}") from None
    return tables.dca_table(read_table(a.file), a.file, truth=a.truth_col, scores=a.score_col, thresholds=thresholds,
                            positive=a.positive, treat_all_label=a.treat_all_label,
                            treat_none_label=a.treat_none_label)


def _kappa(a: argparse.Namespace) -> tables.TableResult:
    if a.rater_col:
        if a.rating_col or a.reader_col or a.subject_col:
            raise TableError("use either --rater-col (one column per rater) or "
                             "--subject-col/--reader-col/--rating-col (long table), not both")
        if len(a.rater_col) < 2:
            raise TableError("give at least two --rater-col columns")
        wide = tables.kappa_wide_from_columns(read_table(a.file), a.file, a.rater_col)
        what = "columns " + ", ".join(a.rater_col)
    elif a.rating_col and a.reader_col and a.subject_col:
        wide = tables.kappa_wide_from_long(read_table(a.file, a.subject_col), a.file, subjects=a.subject_col,
                                           reader=a.reader_col, rating=a.rating_col)
        what = f"readers in '{a.reader_col}'"
    else:
        raise TableError("give --rater-col twice or more, or all of --subject-col, --reader-col and --rating-col")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tables.kappa_table(wide, a.file, what, weights=a.weights, alpha=a.alpha,
                                    categories=tables.categories_option(a.categories, wide, what))
    for message in dict.fromkeys(map(_warning_text, (w.message for w in caught))):  # once per pair of raters
        print(f"{PROG} kappa: warning: {message}", file=sys.stderr)
    return result


def _warning_text(message: Warning) -> str:
    """One line per warning; inferred kappa categories are restated as the option that states them."""
    if not isinstance(message, InferredCategoriesWarning):
        return str(message)
    labels = [str(c) for c in message.categories]
    return (f"weighted kappa on the categories inferred from the ratings ({', '.join(labels)}); if the scale has "
            f"values nobody gave, state all of them in order with --categories (here: --categories "
            f"{','.join(labels)} plus the unused values)")


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``dlm-stats`` argument parser."""
    parser = argparse.ArgumentParser(prog=PROG, description="Statistics for comparing pCR models with "
                                                            "radiologists, on CSV files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text, description, file_name, alpha=True):
        p = sub.add_parser(name, help=help_text, description=description)
        p.add_argument("file", metavar=file_name)
        if name != "kappa":
            p.add_argument("--positive", default=None, metavar="VALUE",
                           help="value of the truth column that means 1 (default: truth is 0/1)")
        if alpha:
            p.add_argument("--alpha", type=_alpha, default=0.05, help="1 - confidence level (default 0.05)")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
        p.set_defaults(func=func)
        return p

    p = command("mrmc", _mrmc, "Obuchowski-Rockette MRMC analysis with Hillis df",
                "Multi-reader multi-case ROC analysis of a long table (one row per reader x test x case).",
                "RATINGS.csv")
    for column in ("reader", "test", "case", "truth", "rating"):
        p.add_argument(f"--{column}-col", default=column)
    p.add_argument("--cluster-col", default=None, help="patient id: jackknife/DeLong treat patients as the unit")
    p.add_argument("--cov", choices=COV_METHODS, default="jackknife", help="covariance estimator (default jackknife)")

    p = command("delong", _delong, "paired DeLong test of two AUCs", "Paired comparison of two AUCs on the same "
                "cases: DeLong, or Obuchowski's clustered test with --cluster-col.", "DATA.csv")
    for option in ("--truth-col", "--score-a", "--score-b"):
        p.add_argument(option, required=True)
    p.add_argument("--cluster-col", default=None)
    p.add_argument("--alternative", choices=("two-sided", "greater", "less"), default="two-sided",
                   help='"greater": AUC(a) > AUC(b)')
    p.add_argument("--ci-method", choices=tuple(CLUSTERED_AUC_CI_METHODS), default=None,
                   help=f"interval of each AUC with --cluster-col (default {DEFAULT_CLUSTERED_AUC_CI}: "
                        f"{CLUSTERED_AUC_CI_METHODS[DEFAULT_CLUSTERED_AUC_CI]}; normal: Obuchowski's Wald)")

    p = command("dca", _dca, "decision curves (net benefit)", "Net benefit of each score against treat all / "
                "treat none.", "DATA.csv", alpha=False)
    p.add_argument("--truth-col", required=True)
    p.add_argument("--score-col", action="append", required=True,
                   help="predicted probability column (repeat for several)")
    p.add_argument("--thresholds", default="0.01:0.99:0.01",
                   help="START:STOP:STEP or comma list (default 0.01:0.99:0.01)")
    for label in ("treat-all", "treat-none"):
        p.add_argument(f"--{label}-label", default=label.replace("-", "_"))

    p = command("kappa", _kappa, "Cohen's / Fleiss' kappa", "Agreement between raters: Cohen's kappa for two, "
                "Fleiss' kappa plus pairwise Cohen's kappa for three or more.", "DATA.csv")
    p.add_argument("--rater-col", action="append", default=[], help="wide table: one column per rater (repeat)")
    p.add_argument("--subject-col", action="append", default=[],
                   help="long table: subject id column(s) (repeat for composite ids)")
    for what in ("reader", "rating"):
        p.add_argument(f"--{what}-col", default=None, help=f"long table: {what} column")
    p.add_argument("--weights", choices=("linear", "quadratic"), default=None,
                   help="weighted Cohen's kappa for ordinal ratings")
    p.add_argument("--categories", default=None, metavar="C1,C2,...",
                   help="every possible rating, in order (e.g. 1,2,3,4,5); weighted kappa depends on unused ones "
                        "(default: the ratings given)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlm-stats``; returns the exit status (0, or 2 on bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage or help
        return int(exc.code or 0)
    try:
        result = args.func(args)
    except TableError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.to_json() if args.json else result.text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
