"""Models without images a network must beat: the baselines a clinician would name.

Each is a :class:`LesionModel`: it reads one row of lesion features per lesion (a DataFrame
assembled from the cohort: clinical covariates, the sites' measurements, radiomics), is fitted on
the fit lesions of one fold (every choice it makes — imputation, scaling, feature selection,
hyper-parameters — is made there, with patient-grouped inner folds), and returns P(pCR).

- :class:`~dlm_ml.models.baselines.clinical.ClinicalLogistic` — clinical covariates and the
  baseline diameter, regularised logistic regression.
- :class:`~dlm_ml.models.baselines.radiomics.RadiomicsLogistic` — IBSI radiomics and their
  deltas, nested feature selection and regularisation.
- :class:`~dlm_ml.models.baselines.rules.RuleModel` — one measured quantity, its direction fixed
  by the rule ("disappeared ⇒ pCR", shrinkage, ADC change).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

#: The lesion feature tables a model may read (what the training command assembles for it):
#: clinical covariates, the sites' measurements, radiomics features (mirp, with their deltas),
#: and the ROI means only (the same regions and sampling, without mirp: what the ADC-change rule reads).
COVARIATES, MEASUREMENTS, RADIOMICS, ROI_MEANS = "covariates", "measurements", "radiomics", "roi_means"
INPUT_TABLES: tuple[str, ...] = (COVARIATES, MEASUREMENTS, RADIOMICS, ROI_MEANS)


class LesionModel(Protocol):
    """A pCR model on tabular lesion features.

    ``inputs``: the subset of :data:`INPUT_TABLES` it reads. ``fit(features, pcr, groups)``:
    ``features`` one row per lesion, ``pcr`` 0/1 [N], ``groups`` patient ids [N] (inner
    tuning folds never split a patient). ``predict_proba(features)`` → P(pCR) [N] in [0, 1].
    ``summary()``: what was learned (chosen hyper-parameters, selected features, coefficients),
    JSON-serialisable.
    """

    inputs: tuple[str, ...]

    def fit(self, features: pd.DataFrame, pcr: np.ndarray, groups: np.ndarray) -> LesionModel: ...

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray: ...

    def summary(self) -> dict: ...
