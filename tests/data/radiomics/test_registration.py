"""Regions are defined in baseline CT space and reach later images through their registration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.radiomics import RadiomicsConfig, radiomics_features, roi_mean_column
from dlm_ml.data.registration import RegistrationConfig, RegistrationSet, write_transform
from dlm_ml.data.registration.cohort import TABLE_COLUMNS

from .conftest import LESION_VALUE, write_cohort

CONFIG = RadiomicsConfig(ring_mm=0.0, margin_mm=1.0, families=("statistics",))
SHIFT_MM = (4.0, -3.0, 2.0)   # where the lesion moved to at presurgery, in the image's physical space


def _moved_cohort(root):
    lesion = {"patient_id": "P1", "lesion_id": "L1", "x_mm": 18.0, "y_mm": 20.0, "z_mm": 19.0, "diameter_mm": 8.0}
    write_cohort(root, [lesion])
    # the presurgery images show the lesion shifted: rewrite them with their origin moved
    for m in ("ct", "adc"):
        path = root / f"images/P1/presurgery_{m}.nii.gz"
        image = sitk.ReadImage(str(path))
        image.SetOrigin(SHIFT_MM)
        sitk.WriteImage(image, str(path))
    return load_cohort(root)


def _registration(cohort, folder) -> RegistrationSet:
    rows = []
    for t, m in (("baseline", "adc"), ("presurgery", "ct"), ("presurgery", "adc")):
        shift = SHIFT_MM if t == "presurgery" else (0.0, 0.0, 0.0)
        path = folder / f"{t}_{m}.tfm"
        sha = write_transform(sitk.TranslationTransform(3, shift), path)   # baseline CT point → image point
        rows.append({**{c: None for c in TABLE_COLUMNS}, "patient_id": "P1", "timepoint": t, "modality": m,
                     "transform_path": str(path), "transform_sha256": sha, "flagged": False, "cached": False})
    return RegistrationSet(pd.DataFrame(rows, columns=TABLE_COLUMNS), RegistrationConfig())


def test_presurgery_roi_is_where_the_lesion_was_after_registration(tmp_path):
    cohort = _moved_cohort(tmp_path / "cohort")
    regs = _registration(cohort, tmp_path / "tfm")
    registered = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path / "cache", registration=regs,
                                    progress=False, log=lambda m: None).features.iloc[0]
    for (t, m), value in LESION_VALUE.items():
        assert registered[roi_mean_column(t, m)] == pytest.approx(value, abs=1e-3), (t, m)
    # without the registration the same ROI misses the moved lesion
    unregistered = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path / "cache",
                                      progress=False, log=lambda m: None)
    assert not np.isclose(unregistered.features.iloc[0][roi_mean_column("presurgery", "adc")], 1250.0, atol=10)
    assert registered.name == 0 and unregistered.cache_key != _key(cohort, regs, tmp_path)


def _key(cohort, regs, tmp_path):
    return radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path / "cache", registration=regs,
                              progress=False, log=lambda m: None).cache_key
