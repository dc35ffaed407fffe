"""What the sites measured of each lesion, as the quantities clinical rules act on.

``lesions.csv`` holds the baseline diameter (``diameter_mm``) and, optionally, the presurgery
CT diameter (:data:`~dlm_ml.data.cohort.schema.DIAMETER_PRESURGERY`, 0 where the lesion was
no longer seen). From them:

- ``disappeared``: 1 when the lesion was no longer seen at presurgery, 0 when seen (NaN: not
  recorded). The case definition of a disappearing liver metastasis, and the clinical policy
  "disappeared ⇒ leave in place" reads it directly.
- ``shrinkage``: ``1 - diameter_presurgery_mm / diameter_mm`` (1 for a disappeared lesion, 0 for
  no change, negative for growth; NaN when not recorded).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.data.radiomics.names import roi_mean_column

DISAPPEARED = "disappeared"
SHRINKAGE = "shrinkage"
MEASUREMENT_COLUMNS: tuple[str, ...] = ("diameter_mm", schema.DIAMETER_PRESURGERY, DISAPPEARED, SHRINKAGE)


def disappeared(diameter_presurgery_mm) -> np.ndarray:
    """1.0 where the presurgery diameter is 0 (no longer seen), 0.0 where positive, NaN where not
    recorded. Shape as the input."""
    d = np.asarray(diameter_presurgery_mm, dtype=float)
    return np.where(np.isnan(d), np.nan, (d == 0).astype(float))


def lesion_measurements(cohort_lesions: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """The measurements of ``lesions`` (``patient_id, lesion_id``), one row per lesion in the same
    order: ``patient_id, lesion_id`` and :data:`MEASUREMENT_COLUMNS` (mm and fractions).

    ``cohort_lesions``: the cohort's ``lesions.csv`` table (typed, as a loaded cohort holds it).
    A cohort without the presurgery column gives NaN for it and the quantities derived from it.
    """
    key = list(schema.LESION_KEY)
    columns = ["diameter_mm"] + ([schema.DIAMETER_PRESURGERY] if schema.DIAMETER_PRESURGERY in cohort_lesions else [])
    table = lesions[key].reset_index(drop=True).merge(cohort_lesions[key + columns], on=key, how="left",
                                                      validate="1:1")
    unknown = table[table.diameter_mm.isna()]
    if len(unknown):
        listed = ", ".join(f"patient {r.patient_id} lesion {r.lesion_id}" for r in unknown.head(10).itertuples())
        raise ValueError(f"{len(unknown)} lesion(s) not in {schema.LESIONS_CSV}: {listed}")
    if schema.DIAMETER_PRESURGERY not in table:
        table[schema.DIAMETER_PRESURGERY] = np.nan
    d0 = table.diameter_mm.to_numpy(float)
    d1 = table[schema.DIAMETER_PRESURGERY].to_numpy(float)
    table[DISAPPEARED] = disappeared(d1)
    table[SHRINKAGE] = 1.0 - d1 / d0
    return table[key + list(MEASUREMENT_COLUMNS)]


ADC_CHANGE = "adc_change"


def adc_change(radiomics: pd.DataFrame) -> np.ndarray:
    """Relative change of the lesion's ROI mean ADC, ``presurgery / baseline - 1`` (a fraction;
    NaN where either map is missing). ``radiomics``: a table of
    :func:`dlm_ml.data.radiomics.radiomics_features` holding both ROI means."""
    before = radiomics[roi_mean_column(schema.REFERENCE_TIMEPOINT, "adc")].to_numpy(float)
    after = radiomics[roi_mean_column(schema.DECISION_TIMEPOINT, "adc")].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, after / before - 1.0, np.nan)
