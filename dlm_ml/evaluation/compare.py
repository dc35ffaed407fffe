"""Tables that compare runs: one row per run's model (the config values that differ between runs,
AUC with CI, the operating points at each reader's threshold) beside the readers' rows, built from
plain run summaries and the structured metric records of each run's evaluation (never from metric
labels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RunSummary:
    """What a comparison needs of one run.

    Attributes
    ----------
    run_id, run_name : str
    params : dict — flattened config, dotted key -> value (as text).
    cohort : str — cohort fingerprint (readers' rows are shown once per cohort).
    records : list of dict — the run's ``evaluation/metrics.json`` records
        (:mod:`dlm_ml.evaluation.records`).
    """

    run_id: str
    run_name: str
    params: dict
    cohort: str
    records: list[dict] = field(default_factory=list)


def differing_params(runs: Sequence[RunSummary], is_result_key: Callable[[str], bool],
                     keys: Iterable[str] | None = None) -> list[str]:
    """Config keys whose value differs between runs, among those that can change a result
    (``is_result_key``); or ``keys`` when given."""
    keys = list(keys or [])
    if keys:
        return keys
    names = sorted(set().union(*(r.params for r in runs))) if runs else []
    return [n for n in names if is_result_key(n) and len({r.params.get(n) for r in runs}) > 1]


def _find(records: list[dict], method_id: str, metric: str) -> dict | None:
    return next((r for r in records if r["method_id"] == method_id and r["metric"] == metric), None)


def _value(record: dict | None, name: str = "estimate") -> float:
    return np.nan if record is None or record.get(name) is None else float(record[name])


def _auc_ci(record: dict | None) -> str:
    if record is None or record.get("estimate") is None:
        return ""
    return f"{_value(record):.3f} ({_value(record, 'ci_low'):.3f}–{_value(record, 'ci_high'):.3f})"


def _readers(records: list[dict]) -> list[str]:
    return sorted({r["reader_id"] for r in records if r["role"] == "reader"})


def comparison_table(runs: Sequence[RunSummary], keys: Sequence[str]) -> pd.DataFrame:
    """Rows: each run's model, then each reader once per cohort (readers do not change with the
    model). Columns: ``row``, ``run_id``, ``run_name``, the config ``keys``, ``auc_ci`` (AUC with
    its patient-bootstrap CI), ``auc``, and per reader R ``sens_at_R_spec``/``spec_at_R_spec``:
    the model's sensitivity and specificity at the threshold matched to R's specificity (on a
    reader row: that reader's own)."""
    rows, first_of_cohort = [], {}
    for run in runs:
        auc = _find(run.records, "model", "auc")
        row = {"row": "model", "run_id": run.run_id, "run_name": run.run_name,
               **{k: run.params.get(k) for k in keys}, "auc_ci": _auc_ci(auc), "auc": _value(auc)}
        for r in _readers(run.records):
            row[f"sens_at_{r}_spec"] = _value(_find(run.records, f"model_at:{r}", "sensitivity"))
            row[f"spec_at_{r}_spec"] = _value(_find(run.records, f"model_at:{r}", "specificity"))
        rows.append(row)
        first_of_cohort.setdefault(run.cohort or run.run_id, run)
    for cohort, run in first_of_cohort.items():
        for r in _readers(run.records):
            auc = _find(run.records, f"reader:{r}", "auc")
            rows.append({"row": f"reader {r}", "run_id": run.run_id, "run_name": f"cohort {cohort[:8]}",
                         "auc_ci": _auc_ci(auc), "auc": _value(auc),
                         f"sens_at_{r}_spec": _value(_find(run.records, f"reader:{r}", "sensitivity")),
                         f"spec_at_{r}_spec": _value(_find(run.records, f"reader:{r}", "specificity"))})
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown; numbers with three decimals, missing ones empty."""
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        return "" if v is None else str(v)

    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
