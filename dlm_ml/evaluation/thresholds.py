"""Model thresholds matched to each reader: chosen on a fold's validation lesions, applied to its test lesions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dlm_ml.stats import threshold_for_specificity


def reader_matched_thresholds(val_lesions, val_prob, readings, fold: int):
    """For each reader: the model threshold whose specificity on the fold's validation
    lesions matches the reader's specificity on the same lesions. Test labels are never seen."""
    rows = []
    table = val_lesions.assign(prob_pcr=val_prob)
    for reader_id, reads in readings.groupby("reader_id", sort=True):
        joined = table.merge(reads[["patient_id", "lesion_id", "call"]], on=["patient_id", "lesion_id"])
        negatives = joined[joined.pcr == 0]
        threshold, spec = math.nan, math.nan
        if len(negatives) and joined.pcr.nunique() == 2:
            spec = float((negatives.call == 0).mean())
            threshold = threshold_for_specificity(joined.pcr.to_numpy(), joined.prob_pcr.to_numpy(), spec).threshold
        rows.append({"fold": fold, "reader_id": reader_id, "reader_specificity_val": spec,
                     "threshold": threshold, "n_val_lesions": len(joined)})
    return pd.DataFrame(rows)


def apply_thresholds(predictions: pd.DataFrame, thresholds: pd.DataFrame, reader_id: str) -> np.ndarray:
    """Model calls (1 = complete response) with each fold's threshold matched to ``reader_id``
    on that fold's training-side validation lesions."""
    per_fold = thresholds[thresholds.reader_id == reader_id].set_index("fold")["threshold"]
    missing = sorted(set(predictions.fold) - set(per_fold.index))
    if missing:
        raise ValueError(f"no threshold for reader {reader_id} in fold(s) {missing}")
    t = predictions.fold.map(per_fold).to_numpy(float)
    return (predictions.prob_pcr.to_numpy() >= t).astype(int)
