"""dlm-compare: one row per model run — config differences and headline metrics with CIs — beside the readers' rows,
then paired clustered tests between the models and each model against the readers; printed, written as CSV and Markdown.

A run is a dlm-train run or a dlm-evaluate run of predictions made elsewhere, named by the model
it evaluated (its ``dlm_ml.model`` tag, else its run name).

``find_runs``, ``comparison_table`` and ``to_markdown`` are the API the notebook
``notebooks/compare_runs.ipynb`` uses as well.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dlm_ml import tracking
from dlm_ml.cli.compare_models import model_tests
from dlm_ml.evaluation.compare import RunSummary, differing_params, to_markdown
from dlm_ml.evaluation.compare import comparison_table as _table
from dlm_ml.tracking.compare import cohort_dir, evaluation_records, find_compared_runs, model_name
from dlm_ml.tracking.config_keys import is_result_key
from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_text

__all__ = ["comparison_table", "find_runs", "locate_tracking_uri", "main", "to_markdown"]
DEFAULT_URI = "sqlite:///outputs/mlflow/mlflow.db"
STORE = Path("outputs") / "mlflow" / "mlflow.db"


def locate_tracking_uri(env: Mapping[str, str] = os.environ, start: str | Path | None = None) -> str:
    """The tracking store to read: ``DLM_ML_TRACKING_URI`` when set; else ``$DLM_ML_ROOT/outputs/mlflow/
    mlflow.db``; else the first ``outputs/mlflow/mlflow.db`` in ``start`` (default: the current folder)
    or a folder above it. Never creates a store: raises FileNotFoundError naming every place looked at."""
    if env.get("DLM_ML_TRACKING_URI"):
        return env["DLM_ML_TRACKING_URI"]
    here = Path(start or Path.cwd()).resolve()
    candidates = ([Path(env["DLM_ML_ROOT"]) / STORE] if env.get("DLM_ML_ROOT") else []) + \
        [folder / STORE for folder in (here, *here.parents)]
    for candidate in candidates:
        if candidate.is_file():
            return f"sqlite:///{candidate.resolve()}"
    raise FileNotFoundError("no dlm_ml tracking store found; looked for " + ", ".join(map(str, candidates)) +
                            ". Set DLM_ML_ROOT (the folder holding outputs/) or DLM_ML_TRACKING_URI.")


def find_runs(client, *, experiment: str | None = None, run_ids=()) -> list[RunSummary]:
    """Finished dlm-train runs and dlm-evaluate runs of outside predictions of ``experiment`` (or
    ``run_ids``), oldest first, each with the structured records of its evaluation."""
    return [RunSummary(run_id=r.info.run_id, run_name=r.info.run_name, params=dict(r.data.params),
                       cohort=r.data.tags.get("cohort_fingerprint", ""), model_name=model_name(r),
                       records=evaluation_records(client, r.info.run_id), role=r.data.tags.get("dlm_ml.role", ""),
                       cohort_dir=cohort_dir(r))
            for r in find_compared_runs(client, experiment=experiment, run_ids=run_ids)]


def comparison_table(runs: list[RunSummary], keys=None) -> pd.DataFrame:
    """:func:`dlm_ml.evaluation.compare.comparison_table` with the config keys that differ between
    runs and can change a result (or ``keys``)."""
    return _table(runs, differing_params(runs, is_result_key, keys))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlm-compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_ids", nargs="*", help="parent run ids (default: every finished run of --experiment)")
    parser.add_argument("--experiment", default="dlm_ml", help="experiment name (default: dlm_ml)")
    parser.add_argument("--tracking-uri", default=DEFAULT_URI)
    parser.add_argument("--params", default="", help="comma-separated config keys to show (default: those that differ)")
    parser.add_argument("--out", default="outputs/compare", help="folder for the CSV and Markdown tables")
    parser.add_argument("--pairs", default="", help="pairs to test, e.g. A:B,A:C (model names or run ids; default: "
                        "every pair of runs on the same cohort)")
    parser.add_argument("--cohort", default=None, help="cohort folder with the readings (default: the runs' own)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of the intervals")
    args = parser.parse_args(argv)
    # one bar per downloaded file would bury the tables this command prints
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking.open_client(args.tracking_uri)
    try:
        runs = find_runs(client, experiment=args.experiment, run_ids=args.run_ids)
    except ValueError as err:
        print(f"dlm-compare: {err}", file=sys.stderr)
        return 2
    if not runs:
        print(f"dlm-compare: no finished dlm-train or dlm-evaluate run in experiment {args.experiment!r}",
              file=sys.stderr)
        return 2
    table = comparison_table(runs, [k for k in args.params.split(",") if k])
    out = Path(args.out)
    atomic_write_csv(out / "comparison.csv", table)
    atomic_write_text(out / "comparison.md", to_markdown(table))
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.3f}".format):
        print(table.drop(columns=["auc"]).to_string(index=False))
    try:
        print(model_tests(client, runs, out, pairs=args.pairs, cohort=args.cohort, alpha=args.alpha))
    except ValueError as err:
        print(f"dlm-compare: {err}", file=sys.stderr)
        return 2
    print(f"written under {out}: comparison, pairwise, models_vs_readers (.csv, .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
