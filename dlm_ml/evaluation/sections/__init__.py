"""The numbers of the evaluation report, by section: computations on plain tables that call
:mod:`dlm_ml.stats` and return structured dicts (no rendering, no files).

All lesion-level statistics treat the patient as the unit of independence where the method
allows it (Obuchowski's clustered variance, patient bootstrap, MRMC with patient clusters);
DeLong, Wilson and McNemar treat lesions as independent and are shown next to the clustered
figures so that the effect of clustering is visible. A statistic that is undefined on the data
at hand (e.g. one class only among a reader's lesions) is ``{"available": False, "reason": ...}``,
never dropped silently.

Positive class: pCR (no viable tumour). A reader's call 1 and a model call 1 both mean "called
complete response" (a candidate to be left in place); so PPV = P(pCR | called complete response).
"""

from __future__ import annotations

import pandas as pd

from dlm_ml import stats
from dlm_ml.evaluation.sections.calls import agreement, operating_points
from dlm_ml.evaluation.sections.common import (
    LEAVE_ALL,
    MODEL,
    PROPORTIONS,
    RESECT_ALL,
    paired,
    read_by_all,
    reader_ids,
)
from dlm_ml.evaluation.sections.discrimination import comparisons, discrimination, mrmc_section, roc_band
from dlm_ml.evaluation.sections.folds import per_fold
from dlm_ml.evaluation.sections.probabilities import calibration, decision, patient_level
from dlm_ml.evaluation.settings import EvaluationSettings

__all__ = ["LEAVE_ALL", "MODEL", "PROPORTIONS", "RESECT_ALL", "SECTION_NAMES", "compute_sections", "coverage", "paired"]


def coverage(counts: dict, predictions, readings, readers) -> dict:
    """Shown first: what is in the cohort and what each analysis could use."""
    out = dict(counts)
    for r in readers:
        out[f"lesions_read_by_{r}"] = int(len(paired(predictions, readings, r)))
    if readers:
        out["lesions_read_by_all_readers"] = int(len(read_by_all(predictions, readings, readers)))
    return out


SECTION_NAMES = ("counts", "discrimination", "roc_band", "comparisons", "mrmc", "operating_points", "agreement",
                 "calibration", "decision_curve", "patient_level", "folds")


def patient_resamples(predictions: pd.DataFrame, settings: EvaluationSettings) -> stats.ClusterResamples | None:
    """The evaluation's one patient bootstrap: ``settings.n_boot`` resamples of the evaluated
    patients (seed ``settings.seed``), shared by every bootstrapped quantity (the AUCs of model and
    readers, the ROC band, the proportions at each operating point, the patient-level AUCs), so
    their replicates are paired: replicate ``b`` of each is computed on the same patients. A
    quantity on some patients' lesions (those a reader read) takes those patients' multiplicities.
    None when fewer than 2 patients are evaluated: every bootstrap then says why it is undefined."""
    try:
        return stats.draw_cluster_resamples(predictions.patient_id.to_numpy(), n_boot=settings.n_boot,
                                            seed=settings.seed)
    except ValueError:
        return None


def compute_sections(predictions: pd.DataFrame, readings: pd.DataFrame, thresholds: pd.DataFrame | None,
                     counts: dict, settings: EvaluationSettings) -> dict:
    """Every number of the report, by section (pandas frames still as frames).

    ``predictions``: evaluated lesions ``patient_id, lesion_id, fold, prob_pcr, pcr``;
    ``readings``: ``reader_id, patient_id, lesion_id, score, call``; ``thresholds``: ``fold,
    reader_id, threshold`` or None; ``counts``: :func:`dlm_ml.evaluation.evaluate.coverage_counts`.
    """
    readings = readings.assign(reader_id=readings.reader_id.astype(str))
    if thresholds is not None:
        thresholds = thresholds.assign(reader_id=thresholds.reader_id.astype(str))
    readers = reader_ids(readings)
    resamples = patient_resamples(predictions, settings)
    return {
        "counts": coverage(counts, predictions, readings, readers),
        "discrimination": discrimination(predictions, readings, readers, settings, resamples),
        "roc_band": roc_band(predictions, settings, resamples),
        "comparisons": comparisons(predictions, readings, readers, settings),
        "mrmc": mrmc_section(predictions, readings, readers, settings),
        "operating_points": operating_points(predictions, readings, readers, thresholds, settings, resamples),
        "agreement": agreement(predictions, readings, readers, settings),
        "calibration": calibration(predictions, settings),
        "decision_curve": decision(predictions, readings, readers, thresholds, settings),
        "patient_level": patient_level(predictions, readings, readers, settings, resamples),
        "folds": per_fold(predictions, settings),
    }
