"""Predicting every lesion of a cohort with a fold ensemble: the patches made exactly as the run made
them, the channels the models need checked, one row per lesion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dlm_ml.data.covariates import covariate_table
from dlm_ml.data.patches import PatchSet
from dlm_ml.models.ensemble import FoldEnsemble

#: The column of a prediction row naming the channels (timepoint_modality) its lesion had no image for.
MISSING_CHANNELS = "missing_channels"
#: ``fold`` of an ensemble's prediction (every fold model contributed; ``folds`` names them).
ENSEMBLE_FOLD = -1


def check_channels(ensemble: FoldEnsemble, patches: PatchSet) -> list[str]:
    """Refuse patches of other channels than the models read, and a channel no lesion has an image
    for when the models cannot handle missing images (they would read zeros as tissue). Returns
    notes on channels missing for some lesions (such lesions are predicted; the row says which)."""
    if list(patches.channel_names) != ensemble.channel_names:
        raise ValueError(f"the patches have channels {list(patches.channel_names)} but the fold models read "
                         f"{ensemble.channel_names}")
    notes, absent = [], []
    for j, name in enumerate(ensemble.channel_names):
        n_missing = int((~patches.present[:, j]).sum())
        if len(patches) and n_missing == len(patches):
            absent.append(name)
        elif n_missing:
            notes.append(f"{name}: no image for {n_missing} of {len(patches)} lesions")
    if absent and not ensemble.handles_missing_images:
        raise ValueError(f"no lesion of the cohort has an image for channel(s) {absent}, and the run's model "
                         f"({ensemble.model_name}) does not handle missing images (it would read zeros as tissue); "
                         "predict with a model that does (e.g. model=longitudinal) or provide the images")
    return notes + [f"{name}: no image for any lesion (the model handles missing images)" for name in absent]


def ensemble_covariates(ensemble: FoldEnsemble, cohort, lesions: pd.DataFrame) -> pd.DataFrame | None:
    """The raw covariates the fold encoders read, one row per lesion of ``lesions``."""
    return None if not ensemble.covariates else covariate_table(cohort, lesions, ensemble.covariates)


def predict_lesions(ensemble: FoldEnsemble, patches: PatchSet, covariates: pd.DataFrame | None, *,
                    folds: Sequence[int] | None = None, flip_tta: bool = False, batch_size: int = 32) -> pd.DataFrame:
    """One row per lesion of ``patches``: ``patient_id, lesion_id, fold, prob_pcr, pcr`` (NaN when
    the cohort has no outcome), the mean uncalibrated probability, the folds' spread and each
    fold's probability, ``n_folds``, ``folds`` ("0;1;2"), ``missing_channels``.

    ``fold`` is the fold whose model predicted when one fold is used, else
    :data:`ENSEMBLE_FOLD`."""
    prediction = ensemble.predict(patches.image, patches.present, covariates, folds=folds, flip_tta=flip_tta,
                                  batch_size=batch_size)
    lesions = patches.lesions.reset_index(drop=True)
    names = np.asarray(ensemble.channel_names)
    missing = [";".join(names[~row]) for row in np.asarray(patches.present, bool)]
    fold = prediction.folds[0] if len(prediction.folds) == 1 else ENSEMBLE_FOLD
    columns = prediction.columns()
    table = pd.DataFrame({"patient_id": lesions.patient_id.astype(str), "lesion_id": lesions.lesion_id.astype(str),
                          "fold": fold, "prob_pcr": columns.pop("prob_pcr"),
                          "pcr": pd.to_numeric(lesions.pcr, errors="coerce").astype(float)})
    for name, values in columns.items():
        table[name] = values
    table["n_folds"] = len(prediction.folds)
    table["folds"] = ";".join(str(k) for k in prediction.folds)
    table[MISSING_CHANNELS] = missing
    return table


def labelled_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows with an outcome, ``pcr`` as int (what an evaluation reads)."""
    rows = predictions[predictions.pcr.notna()].copy()
    rows["pcr"] = rows.pcr.astype(int)
    return rows.reset_index(drop=True)
