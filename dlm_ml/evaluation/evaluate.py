"""Compare out-of-fold pCR predictions with the radiologists' readings.

Works on a predictions table plus a cohort. Lesions without outcome, without prediction or
without a reading are counted and reported, never dropped silently. Nothing here talks to a
tracking store: the caller logs :attr:`Evaluation.metrics`, ``counts`` and ``files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.records import flat_metrics, headline_metrics, headline_sizes, headline_table, metric_records
from dlm_ml.evaluation.report import build_report
from dlm_ml.evaluation.sections import MODEL
from dlm_ml.evaluation.settings import EvaluationSettings
from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_json, atomic_write_text


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
        Flat name -> number, for a tracking UI (e.g. ``model_auc``, ``mrmc_p``).
    counts : dict
        Lesions in the cohort, with prediction, outcome, reading; what was left out and why.
    files : list of Path
        Everything written under the output folder.
    records : list of dict
        Structured metric records (see :mod:`dlm_ml.evaluation.records`), as in ``metrics.json``.
    model_name : str
        What the report, the headline table and the figures call the model (e.g. ``clinical_logistic``).
    """

    table: pd.DataFrame
    table_text: str
    metrics: dict
    counts: dict
    files: list[Path] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    model_name: str = MODEL


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read and check a predictions table (docs/design.md §5), with its optional column
    ``prob_pcr_uncalibrated`` (:data:`~dlm_ml.data.cohort.schema.UNCALIBRATED_PROB`)."""
    path = Path(path)
    table = pd.read_csv(path, dtype={"patient_id": str, "lesion_id": str})
    missing = [c for c in schema.PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(schema.PREDICTION_COLUMNS)}")
    problems = []
    dup = table[table.duplicated(list(schema.LESION_KEY), keep=False)]
    for row in dup.itertuples():
        problems.append(f"line {row.Index + 2} (patient {row.patient_id}, lesion {row.lesion_id}): duplicate lesion")
    for column in ("prob_pcr", schema.UNCALIBRATED_PROB):
        if column not in table.columns:
            continue
        bad = table[~table[column].between(0, 1)]
        for row in bad.itertuples():
            problems.append(f"line {row.Index + 2} (patient {row.patient_id}, lesion {row.lesion_id}): "
                            f"{column} {getattr(row, column)!r} outside [0, 1]")
    if problems:
        raise ValueError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return table


def coverage_counts(predictions: pd.DataFrame, cohort) -> dict:
    """How many lesions have what: nothing about a lesion is left out without a count.

    ``cohort`` needs ``lesions``, ``outcomes`` and ``readings`` tables keyed by
    ``(patient_id, lesion_id)``. ``lesions_without_reading_<reader>`` counts evaluated lesions
    (predicted, with outcome) that reader did not read.
    """
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


def format_table(table: pd.DataFrame) -> str:
    width = max([26, *(len(str(m)) + 2 for m in table.method)])
    lines = [f"{'':<{width}}{'AUC (95% CI, patient bootstrap)':<34}{'sens':>7}{'spec':>7}{'lesions':>9}"
             f"{'patients':>10}"]
    for r in table.itertuples():
        auc = "" if pd.isna(r.auc) else f"{r.auc:.3f} ({r.auc_ci_low:.3f}-{r.auc_ci_high:.3f})"
        sens = "" if pd.isna(r.sensitivity) else f"{r.sensitivity:.3f}"
        spec = "" if pd.isna(r.specificity) else f"{r.specificity:.3f}"
        lines.append(f"{r.method:<{width}}{auc:<34}{sens:>7}{spec:>7}{r.n_lesions:>9}{r.n_patients:>10}")
    return "\n".join(lines)


def _with_cohort_outcomes(predictions: pd.DataFrame, cohort) -> pd.DataFrame:
    """Evaluated lesions with the cohort's outcome; a predictions file's pcr must agree with it."""
    key = list(schema.LESION_KEY)
    outcomes = cohort.outcomes[key + ["pcr"]]
    disagree = predictions.merge(outcomes, on=key, suffixes=("", "_cohort"))
    disagree = disagree[disagree.pcr != disagree.pcr_cohort]
    if len(disagree):
        first = disagree.iloc[0]
        raise ValueError(f"{len(disagree)} prediction row(s) carry a pcr that differs from outcomes.csv, "
                         f"e.g. patient {first.patient_id}, lesion {first.lesion_id}")
    return predictions.drop(columns=["pcr"]).merge(outcomes, on=key, how="inner")


def _with_presurgery_diameter(joined: pd.DataFrame, cohort) -> pd.DataFrame:
    """The lesions' presurgery diameter (``lesions.csv``, optional; 0 = disappeared, NaN = not
    recorded) as a column, for the "disappeared => leave" policy of the decision curve; a cohort
    without the column leaves the table as it is."""
    column = schema.DIAMETER_PRESURGERY
    if column not in cohort.lesions.columns:
        return joined
    key = list(schema.LESION_KEY)
    diameters = cohort.lesions[key + [column]].astype({column: float})
    return joined.drop(columns=[column], errors="ignore").merge(diameters, on=key, how="left")


def evaluate(predictions: pd.DataFrame, cohort, thresholds: pd.DataFrame | None, out_dir: str | Path, *,
             settings: EvaluationSettings, header: dict | None = None, model_name: str = MODEL) -> Evaluation:
    """Evaluate out-of-fold predictions against the cohort's outcomes and readings.

    Writes to ``out_dir``: ``headline.csv``/``headline.txt`` (the printed table),
    ``metrics.json`` (``header``, structured ``records``, flat ``metrics``, ``counts``) and the
    full report (report.md/.html/.json and figures, :func:`dlm_ml.evaluation.report.build_report`).
    Every bootstrap (AUC, proportions, ROC band) runs once, inside the report; the headline
    table is read off its sections.

    Parameters
    ----------
    predictions : DataFrame — ``patient_id, lesion_id, fold, prob_pcr, pcr`` (docs/design.md §5).
    cohort : object with ``lesions``, ``outcomes``, ``readings`` tables (a loaded cohort).
    thresholds : DataFrame or None — ``fold, reader_id, threshold`` matched on training-side lesions.
    settings : EvaluationSettings — from ``hydra.utils.instantiate(cfg.evaluation)``.
    header : dict, optional — shown at the top of the report, in the given order.
    model_name : str — what the report, headline table and figures call the model (e.g. the
        ``model`` config choice); method ids and flat metric names stay ``model``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = coverage_counts(predictions, cohort)
    joined = _with_presurgery_diameter(_with_cohort_outcomes(predictions, cohort), cohort)
    report = build_report(joined, cohort.readings, thresholds, counts, out_dir, settings=settings, header=header,
                          model_name=model_name)
    records = metric_records(report.sections, model_name=model_name)
    table = headline_table(records, headline_sizes(report.sections, thresholds is not None), model_name=model_name)
    text = format_table(table)
    left_out = [f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()
                if v and k.startswith(("lesions_without", "predictions_not"))]
    if left_out:
        text += "\nNot in the table: " + "; ".join(left_out)
    metrics = {**flat_metrics(records), **headline_metrics(report.sections)}
    files = [atomic_write_csv(out_dir / "headline.csv", table),
             atomic_write_text(out_dir / "headline.txt", text + "\n"),
             atomic_write_json(out_dir / "metrics.json", {"header": header or {}, "model_name": model_name,
                                                          "records": records, "metrics": metrics, "counts": counts}),
             *report.files]
    return Evaluation(table, text, metrics, counts, files, records, model_name)
