"""dlm-compare: one row per training run — config differences and headline metrics with CIs —
beside the readers' rows; printed, and written as CSV and Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml import tracking
from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_text

DEFAULT_URI = "sqlite:///outputs/mlflow/mlflow.db"
# Params that differ between runs without changing what was computed.
_IGNORED_PARAMS = ("paths.", "logger.", "resume", "reproduce_of", "task_name")


def find_runs(client, *, experiment: str | None = None, run_ids=()) -> list:
    """Finished dlm-train parent runs of an experiment, or the given run ids, oldest first."""
    if run_ids:
        return [client.get_run(r) for r in run_ids]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no experiment named {experiment!r} in the tracking store")
    return client.search_runs([exp.experiment_id],
                              "tags.`dlm_ml.role` = 'train' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"])


def differing_params(runs, keys=None) -> list[str]:
    """Param names whose value differs between runs (or ``keys`` when given)."""
    if keys:
        return list(keys)
    names = sorted(set().union(*(r.data.params for r in runs))) if runs else []
    return [n for n in names if not n.startswith(_IGNORED_PARAMS)
            and len({r.data.params.get(n) for r in runs}) > 1]


def _ci(metrics: dict, prefix: str) -> str:
    auc = metrics.get(f"{prefix}_auc")
    if auc is None:
        return ""
    low, high = metrics.get(f"{prefix}_auc_ci_low", np.nan), metrics.get(f"{prefix}_auc_ci_high", np.nan)
    return f"{auc:.3f} ({low:.3f}–{high:.3f})"


def comparison_table(runs, keys=None) -> pd.DataFrame:
    """Rows: each run's model, then each reader once per cohort (readers do not change with the
    model). Columns: run, run name, the differing config values, AUC (95% CI), sensitivity and
    specificity at the threshold matched to each reader's specificity."""
    keys = differing_params(runs, keys)
    rows, seen_cohorts = [], {}
    readers_of = {}
    for run in runs:
        m = run.data.metrics
        readers = sorted({k[len("reader_"):-len("_auc")] for k in m if k.startswith("reader_") and k.endswith("_auc")})
        readers_of[run.info.run_id] = readers
        row = {"row": "model", "run_id": run.info.run_id, "run_name": run.info.run_name,
               **{k: run.data.params.get(k) for k in keys},
               "auc_ci": _ci(m, "model"), "auc": m.get("model_auc", np.nan)}
        for r in readers:
            row[f"sens_at_{r}_spec"] = m.get(f"model_at_{r}_specificity_sensitivity", np.nan)
            row[f"spec_at_{r}_spec"] = m.get(f"model_at_{r}_specificity_specificity", np.nan)
        rows.append(row)
        fingerprint = run.data.tags.get("cohort_fingerprint", run.info.run_id)
        seen_cohorts.setdefault(fingerprint, run)
    for fingerprint, run in seen_cohorts.items():
        m = run.data.metrics
        for r in readers_of[run.info.run_id]:
            row = {"row": f"reader {r}", "run_id": run.info.run_id, "run_name": f"cohort {fingerprint[:8]}",
                   "auc_ci": _ci(m, f"reader_{r}"), "auc": m.get(f"reader_{r}_auc", np.nan),
                   f"sens_at_{r}_spec": m.get(f"reader_{r}_sensitivity", np.nan),
                   f"spec_at_{r}_spec": m.get(f"reader_{r}_specificity", np.nan)}
            rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        return "" if v is None else str(v)

    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlm-compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_ids", nargs="*", help="parent run ids (default: every finished run of --experiment)")
    parser.add_argument("--experiment", default="dlm_ml", help="experiment name (default: dlm_ml)")
    parser.add_argument("--tracking-uri", default=DEFAULT_URI)
    parser.add_argument("--params", default="", help="comma-separated config keys to show (default: those that differ)")
    parser.add_argument("--out", default="outputs/compare", help="folder for comparison.csv and comparison.md")
    args = parser.parse_args(argv)
    client = tracking.open_client(args.tracking_uri)
    try:
        runs = find_runs(client, experiment=args.experiment, run_ids=args.run_ids)
    except ValueError as err:
        print(f"dlm-compare: {err}", file=sys.stderr)
        return 2
    if not runs:
        print(f"dlm-compare: no finished dlm-train run in experiment {args.experiment!r}", file=sys.stderr)
        return 2
    table = comparison_table(runs, [k for k in args.params.split(",") if k])
    out = Path(args.out)
    atomic_write_csv(out / "comparison.csv", table)
    atomic_write_text(out / "comparison.md", to_markdown(table))
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.3f}".format):
        print(table.drop(columns=["auc"]).to_string(index=False))
    print(f"written: {out / 'comparison.csv'}, {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
