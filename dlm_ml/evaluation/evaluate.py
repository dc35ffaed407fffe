"""dlm-evaluate: compare out-of-fold pCR predictions with the radiologists' readings.

Works on an MLflow training run (``run_id=...``) or on a predictions table plus a
cohort (``predictions=... cohort_dir=...``). Lesions without outcome, without
prediction or without a reading are counted and reported, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.thresholds import apply_thresholds

log = logging.getLogger("dlm_ml.evaluation.evaluate")
MODEL = "model"


@dataclass
class Evaluation:
    """Result of one evaluation.

    Attributes
    ----------
    table : DataFrame
        Headline table: one row for the model, one per reader, and one per reader-matched
        operating point of the model.
    table_text : str
        The table as printed.
    metrics : dict
        Flat JSON-able numbers (also logged to MLflow as metrics).
    counts : dict
        Lesions in the cohort, with prediction, outcome, reading; what was left out and why.
    files : list of Path
        Everything written under the output folder.
    """

    table: pd.DataFrame
    table_text: str
    metrics: dict
    counts: dict
    files: list[Path] = field(default_factory=list)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read and check a predictions table (DESIGN §5)."""
    path = Path(path)
    table = pd.read_csv(path, dtype={"patient_id": str, "lesion_id": str})
    missing = [c for c in schema.PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(schema.PREDICTION_COLUMNS)}")
    problems = []
    dup = table[table.duplicated(list(schema.LESION_KEY), keep=False)]
    for row in dup.itertuples():
        problems.append(f"line {row.Index + 2} (patient {row.patient_id}, lesion {row.lesion_id}): duplicate lesion")
    bad = table[~table.prob_pcr.between(0, 1)]
    for row in bad.itertuples():
        problems.append(f"line {row.Index + 2} (patient {row.patient_id}, lesion {row.lesion_id}): "
                        f"prob_pcr {row.prob_pcr!r} outside [0, 1]")
    if problems:
        raise ValueError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return table


def coverage_counts(predictions: pd.DataFrame, cohort) -> dict:
    """How many lesions have what: nothing about a lesion is left out without a count."""
    key = list(schema.LESION_KEY)
    all_lesions = set(map(tuple, cohort.lesions[key].to_numpy()))
    with_outcome = set(map(tuple, cohort.outcomes[key].to_numpy()))
    predicted = set(map(tuple, predictions[key].to_numpy()))
    counts = {
        "lesions_in_cohort": len(all_lesions),
        "patients_in_cohort": int(cohort.lesions.patient_id.nunique()),
        "lesions_without_outcome": len(all_lesions - with_outcome),
        "lesions_without_prediction": len((all_lesions & with_outcome) - predicted),
        "predictions_not_in_cohort": len(predicted - all_lesions),
        "lesions_evaluated": len(predicted & with_outcome),
    }
    for reader_id, reads in cohort.readings.groupby("reader_id", sort=True):
        read = set(map(tuple, reads[key].to_numpy()))
        counts[f"lesions_without_reading_{reader_id}"] = len((predicted & with_outcome) - read)
    return counts


def _auc_row(name: str, truth, score, patients, n_boot: int, seed: int) -> dict:
    from dlm_ml.stats import cluster_bootstrap_auc

    row = {"method": name, "n_lesions": len(truth), "n_patients": len(np.unique(patients))}
    if len(np.unique(truth)) == 2:
        ci = cluster_bootstrap_auc(truth, score, patients, n_boot=n_boot, seed=seed)
        row.update(auc=ci.estimate, auc_ci_low=ci.ci_low, auc_ci_high=ci.ci_high)
    return row


def _calls_row(row: dict, truth, call) -> dict:
    from dlm_ml.stats import diagnostic_metrics

    m = diagnostic_metrics(truth, call)
    row.update(sensitivity=m.sensitivity.estimate, specificity=m.specificity.estimate,
               ppv=m.ppv.estimate, npv=m.npv.estimate)
    return row


def headline_table(predictions: pd.DataFrame, readings: pd.DataFrame, thresholds: pd.DataFrame | None,
                   n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Model and readers side by side on the lesions each has read.

    AUC with 95% CI from a patient-level bootstrap; readers' AUC from their ordinal score,
    their sensitivity/specificity from their binary call (positive = complete response).
    The model's calls use, per fold, the threshold matched to the reader's specificity on
    training-side validation lesions.
    """
    key = list(schema.LESION_KEY)
    rows = [_auc_row(MODEL, predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy(),
                     predictions.patient_id.to_numpy(), n_boot, seed)]
    for reader_id, reads in readings.groupby("reader_id", sort=True):
        joined = predictions.merge(reads[key + ["score", "call"]], on=key, how="inner")
        truth, patients = joined.pcr.to_numpy(), joined.patient_id.to_numpy()
        rows.append(_calls_row(_auc_row(f"reader {reader_id}", truth, joined.score.to_numpy(), patients,
                                        n_boot, seed), truth, joined.call.to_numpy()))
        if thresholds is not None and reader_id in set(thresholds.reader_id):
            model_calls = apply_thresholds(joined, thresholds, reader_id)
            rows.append(_calls_row({"method": f"model @ {reader_id} specificity", "n_lesions": len(joined),
                                    "n_patients": len(np.unique(patients))}, truth, model_calls))
    columns = ["method", "auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity", "ppv", "npv",
               "n_lesions", "n_patients"]
    return pd.DataFrame(rows).reindex(columns=columns)


def format_table(table: pd.DataFrame) -> str:
    lines = [f"{'':<26}{'AUC (95% CI, patient bootstrap)':<34}{'sens':>7}{'spec':>7}{'lesions':>9}{'patients':>10}"]
    for r in table.itertuples():
        auc = "" if pd.isna(r.auc) else f"{r.auc:.3f} ({r.auc_ci_low:.3f}-{r.auc_ci_high:.3f})"
        sens = "" if pd.isna(r.sensitivity) else f"{r.sensitivity:.3f}"
        spec = "" if pd.isna(r.specificity) else f"{r.specificity:.3f}"
        lines.append(f"{r.method:<26}{auc:<34}{sens:>7}{spec:>7}{r.n_lesions:>9}{r.n_patients:>10}")
    return "\n".join(lines)


def evaluate(predictions: pd.DataFrame, cohort, thresholds: pd.DataFrame | None, out_dir: str | Path,
             n_boot: int = 2000, seed: int = 0) -> Evaluation:
    """Evaluate out-of-fold predictions against the cohort's outcomes and readings; write
    tables, metrics JSON, plots and the full report (report.md/.html/.json, see
    :func:`dlm_ml.evaluation.report.build_report`) to ``out_dir``."""
    from dlm_ml.evaluation.report import build_report, headline_metrics
    from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = list(schema.LESION_KEY)
    counts = coverage_counts(predictions, cohort)
    # Outcomes come from the cohort: a predictions file's pcr column must agree with it.
    joined = predictions.drop(columns=["pcr"]).merge(cohort.outcomes[key + ["pcr"]], on=key, how="inner")
    disagree = predictions.merge(cohort.outcomes[key + ["pcr"]], on=key, suffixes=("", "_cohort"))
    disagree = disagree[disagree.pcr != disagree.pcr_cohort]
    if len(disagree):
        first = disagree.iloc[0]
        raise ValueError(f"{len(disagree)} prediction row(s) carry a pcr that differs from outcomes.csv, "
                         f"e.g. patient {first.patient_id}, lesion {first.lesion_id}")
    table = headline_table(joined, cohort.readings, thresholds, n_boot=n_boot, seed=seed)
    text = format_table(table)
    left_out = [f"{k.replace('_', ' ')}: {v}" for k, v in counts.items() if v and k.startswith(("lesions_without",
                                                                                                   "predictions_not"))]
    if left_out:
        text += "\nNot in the table: " + "; ".join(left_out)
    metrics = {}
    for r in table.itertuples():
        slug = r.method.replace(" @ ", "_at_").replace(" ", "_")
        for col in ("auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity", "ppv", "npv"):
            value = getattr(r, col)
            if not pd.isna(value):
                metrics[f"{slug}_{col}"] = float(value)
    files = [atomic_write_csv(out_dir / "headline.csv", table),
             atomic_write_text(out_dir / "headline.txt", text + "\n")]
    # The full report (all statistics of DESIGN §7) also draws roc.png, with the patient-bootstrap
    # band and the model's reader-matched operating points.
    report = build_report(joined, cohort.readings, thresholds, counts, out_dir, n_boot=n_boot, seed=seed)
    metrics.update(headline_metrics(report.sections))
    files.append(atomic_write_text(out_dir / "metrics.json",
                                   json.dumps({"metrics": metrics, "counts": counts}, indent=2)))
    files += report.files
    return Evaluation(table, text, metrics, counts, files)


def evaluate_and_log(predictions, cohort, thresholds, out_dir, client, run_id: str, n_boot: int = 2000,
                     seed: int = 0) -> Evaluation:
    """:func:`evaluate`, then log its numbers and files to the MLflow run ``run_id``."""
    from dlm_ml import tracking

    evaluation = evaluate(predictions, cohort, thresholds, out_dir, n_boot=n_boot, seed=seed)
    tracking.log_metrics(client, run_id, evaluation.metrics)
    tracking.log_metrics(client, run_id, {f"count_{k}": v for k, v in evaluation.counts.items()})
    for path in evaluation.files:
        tracking.log_file(client, run_id, path, "evaluation")
    return evaluation
