"""The full evaluation report of one evaluation: every statistic of docs/design.md §7, written as
``report.md``, ``report.html``, ``report.json`` and PNG figures.

The numbers come from :mod:`dlm_ml.evaluation.sections`, the document from
:mod:`dlm_ml.evaluation.render`, the pictures from :mod:`dlm_ml.evaluation.figures`; this module
only runs the three and writes the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlm_ml.evaluation.figures import draw_figures
from dlm_ml.evaluation.records import headline_metrics
from dlm_ml.evaluation.render import render
from dlm_ml.evaluation.sections import MODEL, compute_sections, paired
from dlm_ml.evaluation.settings import EvaluationSettings
from dlm_ml.utils.atomic import atomic_write_text
from dlm_ml.utils.jsonable import to_jsonable

__all__ = ["Report", "build_report", "headline_metrics", "paired"]


@dataclass
class Report:
    """The evaluation report.

    Attributes
    ----------
    sections : dict
        All numbers by section (JSON-able; NaN and infinities are ``None``), as in ``report.json``
        (which also holds the ``header``).
    markdown : str
        The report as Markdown (``report.md``).
    files : list of Path
        Files written: report.md, report.html, report.json and the figures.
    """

    sections: dict
    markdown: str
    files: list[Path] = field(default_factory=list)


def build_report(predictions: pd.DataFrame, readings: pd.DataFrame, thresholds: pd.DataFrame | None, counts: dict,
                 out_dir: str | Path, *, settings: EvaluationSettings, header: dict | None = None,
                 model_name: str = MODEL) -> Report:
    """Compute, render and write the full evaluation report.

    Parameters
    ----------
    predictions : DataFrame
        Evaluated lesions: ``patient_id, lesion_id, fold, prob_pcr, pcr`` (outcomes from the cohort).
    readings : DataFrame
        ``reader_id, patient_id, lesion_id, score, call`` (score: higher = complete response more
        likely; call 1 = read as complete response).
    thresholds : DataFrame or None
        ``fold, reader_id, threshold`` (per fold, matched to the reader on training-side validation
        lesions); None: the model's matched operating points are reported as not available.
    counts : dict
        Coverage counts (:func:`dlm_ml.evaluation.evaluate.coverage_counts`), shown first.
    out_dir : path
        Receives report.md, report.html, report.json, roc.png, calibration.png, decision_curve.png.
    settings : EvaluationSettings
        Bootstrap replicates, seed, alpha (1 − confidence level of every interval), grids.
    header : dict, optional
        What identifies the evaluation (run id, model, cohort fingerprint, commit, date, ...), in the
        caller's order: shown at the top of the report and stored under ``header`` in report.json.
    model_name : str
        What the document and the figures call the model; the sections' numbers keep ``model``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = to_jsonable(dict(header or {}))
    sections = to_jsonable(compute_sections(predictions, readings, thresholds, counts, settings))
    figure_paths = draw_figures(predictions, sections, out_dir, model_name=model_name)
    doc = render(sections, {k: p.name for k, p in figure_paths.items()}, settings.alpha, header, model_name=model_name)
    markdown = doc.markdown()
    stored = {"header": header, **sections}
    files = [atomic_write_text(out_dir / "report.md", markdown),
             atomic_write_text(out_dir / "report.html", doc.html("pCR evaluation report")),
             atomic_write_text(out_dir / "report.json", json.dumps(stored, indent=1, allow_nan=False)),
             *figure_paths.values()]
    return Report(sections=sections, markdown=markdown, files=files)
