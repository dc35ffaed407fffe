"""Structured metric records of one evaluation, and what is derived from them: the headline
table, the flat MLflow metric names.

A record is one metric of one method::

    {"method_id": "model" | "reader:R1" | "model_at:R1", "role": "model" | "reader" | "model_at_reader",
     "reader_id": None | "R1", "metric": "auc" | "sensitivity" | "specificity" | "ppv" | "npv",
     "estimate": 0.81, "ci_low": 0.74, "ci_high": 0.87, "ci_method": "patient_bootstrap_percentile",
     "alpha": 0.05, "n_boot": 2000, "numerator": None | int, "denominator": None | int,
     "n_lesions": 96, "n_patients": 39}

``model_at:R1`` is the model at the per-fold threshold matched to reader R1's specificity.
Positive call = "complete response", so ``ppv`` is P(pCR | called complete response).
Numbers that are undefined on the data are ``None``; a record exists only for a metric the
evaluation could compute. Consumers select by ``method_id``/``role``/``reader_id``/``metric``, never
by display labels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dlm_ml.evaluation.sections import MODEL, PROPORTIONS

RECORD_FIELDS = ("method_id", "role", "reader_id", "metric", "estimate", "ci_low", "ci_high", "ci_method", "alpha",
                 "n_boot", "numerator", "denominator", "n_lesions", "n_patients", "model_name")
HEADLINE_COLUMNS = ["method", "auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity", "ppv", "npv",
                    "n_lesions", "n_patients"]
_HEADLINE_METRICS = ("auc", "sensitivity", "specificity", "ppv", "npv")


def method_id(role: str, reader_id: str | None = None) -> str:
    return {"model": MODEL, "reader": f"reader:{reader_id}", "model_at_reader": f"model_at:{reader_id}"}[role]


def method_label(role: str, reader_id: str | None = None, model_name: str = MODEL) -> str:
    """The display label of a method in the printed headline table (the flat metric names are
    built from the default ``model_name``, so they stay stable whatever the model is called)."""
    return {"model": model_name, "reader": f"reader {reader_id}",
            "model_at_reader": f"{model_name} @ {reader_id} specificity"}[role]


def _record(role, reader_id, metric, estimate, ci_low, ci_high, ci_method, *, alpha, n_boot, n_lesions, n_patients,
            numerator=None, denominator=None) -> dict:
    return {"method_id": method_id(role, reader_id), "role": role, "reader_id": reader_id, "metric": metric,
            "estimate": estimate, "ci_low": ci_low, "ci_high": ci_high, "ci_method": ci_method, "alpha": alpha,
            "n_boot": n_boot, "numerator": numerator, "denominator": denominator, "n_lesions": n_lesions,
            "n_patients": n_patients}


def _auc_record(row: dict, role: str, reader_id: str | None) -> list[dict]:
    boot = row["bootstrap"]
    if not boot.get("available"):
        return []
    return [_record(role, reader_id, "auc", boot["estimate"], boot["ci_low"], boot["ci_high"],
                    f"patient_bootstrap_{boot['method']}", alpha=boot["alpha"], n_boot=boot["n_boot"],
                    n_lesions=row["n_lesions"], n_patients=row["n_patients"])]


def _call_records(m: dict, role: str, reader_id: str, sizes: dict) -> list[dict]:
    out = []
    for metric in PROPORTIONS:
        wilson, boot = m[metric], m[f"{metric}_bootstrap"]
        if not wilson.get("n"):
            continue  # undefined (denominator 0): no record
        low, high, how, n_boot = None, None, "none", None
        if boot.get("available"):
            low, high, how, n_boot = boot["ci_low"], boot["ci_high"], f"patient_bootstrap_{boot['method']}", \
                boot["n_boot"]
        out.append(_record(role, reader_id, metric, wilson["estimate"], low, high, how, alpha=wilson["alpha"],
                           n_boot=n_boot, numerator=wilson["successes"], denominator=wilson["n"], **sizes))
    return out


def metric_records(sections: dict, model_name: str = MODEL) -> list[dict]:
    """The records of the report's headline metrics (JSON-able ``sections`` of
    :func:`dlm_ml.evaluation.report.build_report`), in headline order: the model, then per
    reader the reader and the model at that reader's matched threshold. ``model_name`` is a
    field of the model's records (``None`` on a reader's); the method ids stay ``model``."""
    discrimination = sections["discrimination"]
    records = _auc_record(discrimination[0], "model", None)
    by_reader = {row["reader"]: row for row in discrimination[1:]}
    for op in sections["operating_points"]:
        r = op["reader"]
        sizes = {"n_lesions": op["n_lesions"], "n_patients": op["n_patients"]}
        records += _auc_record(by_reader[r], "reader", r)
        if op.get("reader_calls"):
            records += _call_records(op["reader_calls"], "reader", r, sizes)
        matched = op.get("model_matched")
        if matched and matched.get("available"):
            records += _call_records(matched, "model_at_reader", r, sizes)
    for record in records:
        record["model_name"] = None if record["role"] == "reader" else model_name
    return records


def headline_table(records: list[dict], sizes: dict[str, tuple[int, int]], model_name: str = MODEL) -> pd.DataFrame:
    """One row per method (model, each reader, the model at each reader's threshold): AUC with
    its patient-bootstrap CI, sensitivity, specificity, PPV, NPV, lesions and patients.

    ``sizes``: method_id -> (n_lesions, n_patients) for every method to show, in row order
    (a method may have no record, e.g. one outcome class only). ``model_name`` labels the
    model's rows.
    """
    rows = []
    for mid, (n_lesions, n_patients) in sizes.items():
        mine = {r["metric"]: r for r in records if r["method_id"] == mid}
        role, reader = _parse_method_id(mid)
        row = {"method": method_label(role, reader, model_name), "n_lesions": n_lesions, "n_patients": n_patients}
        for metric in _HEADLINE_METRICS:
            if metric in mine:
                row[metric] = _nan(mine[metric]["estimate"])
        if "auc" in mine:
            row.update(auc_ci_low=_nan(mine["auc"]["ci_low"]), auc_ci_high=_nan(mine["auc"]["ci_high"]))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=HEADLINE_COLUMNS)


def _parse_method_id(mid: str) -> tuple[str, str | None]:
    if mid == MODEL:
        return "model", None
    prefix, reader = mid.split(":", 1)
    return {"reader": "reader", "model_at": "model_at_reader"}[prefix], reader


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def headline_sizes(sections: dict, thresholds_given: bool) -> dict[str, tuple[int, int]]:
    """method_id -> (lesions, patients) in headline order, from the report sections."""
    model = sections["discrimination"][0]
    sizes = {MODEL: (model["n_lesions"], model["n_patients"])}
    for op in sections["operating_points"]:
        r = op["reader"]
        sizes[method_id("reader", r)] = (op["n_lesions"], op["n_patients"])
        matched = op.get("model_matched")
        if thresholds_given and matched and matched.get("available"):
            sizes[method_id("model_at_reader", r)] = (op["n_lesions"], op["n_patients"])
    return sizes


def flat_metrics(records: list[dict]) -> dict[str, float]:
    """MLflow metric names for the UI, e.g. ``model_auc``, ``reader_R1_auc_ci_low``,
    ``model_at_R1_specificity_sensitivity`` (finite values only)."""
    out = {}
    for r in records:
        slug = method_label(r["role"], r["reader_id"]).replace(" @ ", "_at_").replace(" ", "_")
        values = {r["metric"]: r["estimate"]}
        if r["metric"] == "auc":
            values.update(auc_ci_low=r["ci_low"], auc_ci_high=r["ci_high"])
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                out[f"{slug}_{name}"] = float(value)
    return out


def headline_metrics(sections: dict) -> dict[str, float]:
    """A few flat numbers of the report's tests for MLflow (finite values only)."""
    out = {}
    for c in sections["comparisons"]:
        for test in ("delong", "obuchowski"):
            if c[test].get("available"):
                out[f"{test}_p_vs_{c['reader']}"] = c[test]["p_value"]
                out[f"{test}_diff_vs_{c['reader']}"] = c[test]["diff"]
    for op in sections["operating_points"]:
        if op.get("mcnemar", {}).get("available"):
            out[f"mcnemar_p_vs_{op['reader']}"] = op["mcnemar"]["p_value"]
    m = sections["mrmc"]
    if m.get("available"):
        out["mrmc_p"] = m["rrrc"]["p_value"]
        out["mrmc_auc_diff"] = m["rrrc"]["difference"]["estimate"]
    cal = sections["calibration"]
    out["brier"] = cal["brier"]
    if cal["recalibration"].get("available"):
        out["calibration_intercept"] = cal["recalibration"]["intercept"]
        out["calibration_slope"] = cal["recalibration"]["slope"]
    spread = sections.get("folds", {}).get("spread", {})
    if spread.get("n_folds", 0) > 1:  # with one test fold its AUC is model_auc
        out.update({f"fold_{k}": spread[k] for k in ("auc_min", "auc_max", "auc_mean")})
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
