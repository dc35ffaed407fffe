"""Small synthetic evaluation inputs: predictions, readings, per-fold thresholds, counts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.special import expit

from dlm_ml import stats
from dlm_ml.evaluation.sections import paired
from dlm_ml.evaluation.settings import load_settings

N_BOOT, SEED = 200, 3


def settings(n_boot: int = N_BOOT, seed: int = SEED, **overrides):
    """The shipped evaluation settings with a small bootstrap for speed."""
    return load_settings(seed=seed, n_boot=n_boot, **overrides)


def make_tables(n_patients: int = 60, readers=("R1", "R2", "R3"), seed: int = 7):
    """Predictions (informative model, 3 folds by patient), readings (ordinal 1–5 scores from a
    shared latent response plus reader noise, call = score ≥ 4) and per-fold thresholds matched
    to each reader's specificity on the other folds (the training side)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        patient_effect = rng.normal(0, 0.8)
        for lesion in range(rng.integers(1, 5)):
            latent = patient_effect + rng.normal()
            rows.append({"patient_id": f"P{p:03d}", "lesion_id": f"L{lesion + 1}", "fold": p % 3,
                         "latent": latent, "pcr": int(latent + rng.normal(0, 0.7) > 0.3)})
    pred = pd.DataFrame(rows)
    pred["prob_pcr"] = expit(1.3 * pred.latent + rng.normal(0, 0.8, len(pred)) - 0.4)
    readings = []
    for i, r in enumerate(readers):
        score = np.clip(np.round(3 + 1.2 * pred.latent + rng.normal(0, 0.6 + 0.2 * i, len(pred))), 1, 5).astype(int)
        readings.append(pred[["patient_id", "lesion_id"]].assign(reader_id=r, score=score,
                                                                  call=(score >= 4).astype(int)))
    readings = pd.concat(readings, ignore_index=True)[["reader_id", "patient_id", "lesion_id", "score", "call"]]
    thresholds = []
    for fold in range(3):
        train = pred[pred.fold != fold]
        for r in readers:
            calls = paired(train, readings, r)
            spec = float(((calls.call == 0) & (calls.pcr == 0)).sum() / (calls.pcr == 0).sum())
            t = stats.threshold_for_specificity(calls.pcr, calls.prob_pcr, spec)
            thresholds.append({"fold": fold, "reader_id": r, "reader_specificity_val": spec, "threshold": t.threshold})
    pred = pred[["patient_id", "lesion_id", "fold", "prob_pcr", "pcr"]]
    return pred, readings, pd.DataFrame(thresholds)


def counts_for(pred, readings, without_outcome: int = 0, without_prediction: int = 0) -> dict:
    key = ["patient_id", "lesion_id"]
    counts = {"lesions_in_cohort": len(pred) + without_outcome + without_prediction,
              "patients_in_cohort": int(pred.patient_id.nunique()), "lesions_without_outcome": without_outcome,
              "lesions_without_prediction": without_prediction, "predictions_not_in_cohort": 0,
              "lesions_evaluated": len(pred)}
    for r, reads in readings.groupby("reader_id"):
        counts[f"lesions_without_reading_{r}"] = len(pred) - len(pred.merge(reads[key], on=key))
    return counts


def cohort_of(pred: pd.DataFrame, readings: pd.DataFrame) -> SimpleNamespace:
    """The cohort tables :func:`dlm_ml.evaluation.evaluate.evaluate` reads, made from a predictions
    table (its lesions and outcomes) and readings."""
    return SimpleNamespace(lesions=pred[["patient_id", "lesion_id"]], outcomes=pred[["patient_id", "lesion_id", "pcr"]],
                           readings=readings)
