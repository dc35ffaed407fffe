"""Post-hoc calibration of a cross-validation result: per fold, fitted on its validation lesions,
applied to its validation and test lesions; the raw probabilities are kept beside the calibrated
ones (:data:`~dlm_ml.data.cohort.schema.UNCALIBRATED_PROB`) so the report can show both."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.models.calibration import FittedCalibration, PostHocCalibration
from dlm_ml.training.cross_validation import CrossValidationResult


def fold_calibrations(result: CrossValidationResult, calibration: PostHocCalibration) -> dict[int, FittedCalibration]:
    """The map of each fold, fitted on its validation lesions (``method="none"``: identity maps)."""
    return {f.fold: calibration.fit(f.validation.prob_pcr.to_numpy(), f.validation.pcr.to_numpy(),
                                    where=f"fold {f.fold} validation lesions") for f in result.folds}


def calibrate_folds(result: CrossValidationResult, calibration: PostHocCalibration,
                    fitted: dict[int, FittedCalibration] | None = None) -> tuple[CrossValidationResult, pd.DataFrame]:
    """The calibrated result and one row per fold of fitted parameters (``fold, method,
    n_lesions, n_pcr, ...``). With ``method="none"`` the result is returned unchanged.
    ``fitted``: the maps :func:`fold_calibrations` already fitted on ``result`` (else fitted here)."""
    if calibration.method == "none":
        return result, pd.DataFrame(columns=["fold", "method"])
    fitted = fold_calibrations(result, calibration) if fitted is None else fitted
    rows = [{"fold": fold, **{k: v for k, v in m.to_dict().items() if k not in ("x", "y")}}
            for fold, m in fitted.items()]
    folds = [replace(f, test=_calibrated(f.test, fitted[f.fold]), validation=_calibrated(f.validation, fitted[f.fold]))
             for f in result.folds]
    return CrossValidationResult(folds), pd.DataFrame(rows)


def _calibrated(table: pd.DataFrame, fitted) -> pd.DataFrame:
    raw = table.prob_pcr.to_numpy()
    out = table.assign(prob_pcr=fitted.apply(raw))
    out.insert(list(out.columns).index("prob_pcr") + 1, schema.UNCALIBRATED_PROB, raw)
    return out
