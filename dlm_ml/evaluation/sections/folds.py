"""Report section: the model's discrimination and calibration in each test fold, beside the pooled
out-of-fold figures.

Pooled out-of-fold AUC ranks lesions predicted by different fold models against each other: when
the fold models are scaled differently (one predicts 0.2–0.4, another 0.5–0.8) the pooled AUC can
fall well below every per-fold AUC, and the pooled calibration hides folds that over- and
under-predict. The per-fold rows show that; the spread summarises it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.data.folds import FOLD_LABEL_COLUMN
from dlm_ml.evaluation.sections.common import MODEL, _sizes, attempt, unavailable
from dlm_ml.evaluation.settings import EvaluationSettings

POOLED = "pooled"


def fold_labels(predictions: pd.DataFrame) -> dict[int, str]:
    """Test fold id -> label: the predictions' ``fold_label`` column where present (one label per
    fold), else ``fold k``."""
    folds = sorted(int(f) for f in predictions.fold.unique())
    if FOLD_LABEL_COLUMN not in predictions.columns:
        return {k: f"fold {k}" for k in folds}
    labels = predictions.groupby("fold")[FOLD_LABEL_COLUMN].unique()
    several = {int(k): sorted(map(str, v)) for k, v in labels.items() if len(v) > 1}
    if several:
        raise ValueError(f"predictions: column {FOLD_LABEL_COLUMN} must hold one label per fold, got {several}")
    return {int(k): str(v[0]) for k, v in labels.items()}


def fold_row(label: str, frame: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """Discrimination and calibration of the model on ``frame`` (``patient_id, prob_pcr, pcr``).

    AUC with Obuchowski's clustered interval (patients as clusters, as in the discrimination
    section; analytic, so the evaluation's one patient bootstrap of the model AUC stays one), Brier
    score, calibration intercept and slope with Wald intervals (as in the calibration section).
    One outcome class only: the row is unavailable with the reason (sizes and Brier still given).
    """
    truth, prob, patients = frame.pcr.to_numpy(), frame.prob_pcr.to_numpy(float), frame.patient_id.to_numpy()
    row = {"method": f"{MODEL} ({label})", "label": label, **_sizes(frame), "brier": stats.brier_score(truth, prob)}
    if frame.pcr.nunique() < 2:
        return {**row, **unavailable(f"{label}: its {len(frame)} lesions are all pcr={int(truth[0])}; "
                                     "AUC and calibration intercept/slope undefined")}
    row["available"] = True
    row["obuchowski"] = attempt(stats.clustered_auc, truth, prob, patients, alpha=settings.alpha)
    row["recalibration"] = _recalibration(truth, prob, settings.alpha)
    return row


def _recalibration(truth: np.ndarray, prob: np.ndarray, alpha: float) -> dict:
    fit = attempt(stats.calibration_intercept_slope, truth, prob)
    if fit["available"]:
        for name in ("intercept", "slope"):
            se = fit[f"{name}_se"]
            low, high = stats.wald_interval(fit[name], np.nan if se is None else se, alpha=alpha)
            fit.update({f"{name}_ci_low": low, f"{name}_ci_high": high})
    return fit


def _auc(row: dict | None) -> float | None:
    if row is None or not row.get("available") or not row["obuchowski"].get("available"):
        return None
    return float(row["obuchowski"]["auc"])


def per_fold(predictions: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """Section: one row per test fold (ascending fold id), the pooled row (None with one test fold,
    whose row is the pooled result) and the spread of the per-fold AUCs.

    ``predictions``: evaluated lesions ``patient_id, lesion_id, fold, prob_pcr, pcr`` and
    optionally ``fold_label``. ``spread``: ``n_folds``, ``n_folds_with_auc``, ``auc_min``,
    ``auc_max``, ``auc_mean`` over the folds whose AUC is defined, and ``pooled_minus_mean``
    (pooled AUC − mean per-fold AUC; None with one fold).
    """
    labels = fold_labels(predictions)
    rows = [{"fold": k, **fold_row(labels[k], predictions[predictions.fold == k], settings)} for k in labels]
    pooled = fold_row("all test folds", predictions, settings) if len(rows) > 1 else None
    aucs = [a for a in map(_auc, rows) if a is not None]
    spread = {"n_folds": len(rows), "n_folds_with_auc": len(aucs),
              "auc_min": min(aucs, default=None), "auc_max": max(aucs, default=None),
              "auc_mean": float(np.mean(aucs)) if aucs else None, "pooled_minus_mean": None}
    if aucs and _auc(pooled) is not None:
        spread["pooled_minus_mean"] = _auc(pooled) - spread["auc_mean"]
    return {"folds": rows, POOLED: pooled, "spread": spread}
