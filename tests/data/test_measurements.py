"""The sites' measurements as the quantities rules read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.measurements import adc_change, disappeared, lesion_measurements
from dlm_ml.data.radiomics.names import roi_mean_column


def test_disappeared_shrinkage_and_not_recorded():
    cohort_lesions = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "lesion_id": ["L1", "L2", "L1"],
                                   "diameter_mm": [20.0, 10.0, 8.0], "diameter_presurgery_mm": [5.0, 0.0, np.nan]})
    wanted = pd.DataFrame({"patient_id": ["P2", "P1", "P1"], "lesion_id": ["L1", "L1", "L2"]})
    table = lesion_measurements(cohort_lesions, wanted)
    assert table.patient_id.tolist() == ["P2", "P1", "P1"]  # the order asked for
    assert np.isnan(table.disappeared[0]) and table.disappeared.tolist()[1:] == [0.0, 1.0]
    assert np.isnan(table.shrinkage[0]) and table.shrinkage.tolist()[1:] == [0.75, 1.0]


def test_cohort_without_the_column_gives_nan_and_unknown_lesion_is_named():
    cohort_lesions = pd.DataFrame({"patient_id": ["P1"], "lesion_id": ["L1"], "diameter_mm": [20.0]})
    table = lesion_measurements(cohort_lesions, cohort_lesions[["patient_id", "lesion_id"]])
    assert table[["diameter_presurgery_mm", "disappeared", "shrinkage"]].isna().all().all()
    with pytest.raises(ValueError, match="patient P9 lesion L4"):
        lesion_measurements(cohort_lesions, pd.DataFrame({"patient_id": ["P9"], "lesion_id": ["L4"]}))


def test_adc_change_from_roi_means():
    table = pd.DataFrame({roi_mean_column("baseline", "adc"): [1000.0, 1000.0, np.nan],
                          roi_mean_column("presurgery", "adc"): [1250.0, 900.0, 1100.0]})
    out = adc_change(table)
    assert out[:2] == pytest.approx([0.25, -0.1]) and np.isnan(out[2])
    assert disappeared([0.0, 3.0]).tolist() == [1.0, 0.0]
