"""Predicting a cohort's lesions: one row per lesion whatever its outcome, missing images named,
and a channel no lesion has refused for a network that would read its zeros as tissue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.patches import PatchSet
from dlm_ml.models.cohort_prediction import ENSEMBLE_FOLD, check_channels, labelled_rows, predict_lesions
from dlm_ml.models.ensemble import FoldEnsemble
from tests.models.test_ensemble import CHANNELS, _ensemble, _inputs


def _patches(image, present, pcr) -> PatchSet:
    lesions = pd.DataFrame({"patient_id": [f"P{i // 2}" for i in range(len(image))],
                            "lesion_id": [f"L{i % 2}" for i in range(len(image))], "pcr": pcr})
    return PatchSet(image, present, lesions, list(CHANNELS), 2.0, "key")


def _meta(handles_missing: bool) -> dict:
    return {"channel_names": CHANNELS, "patch_voxels": 8, "spacing_mm": 2.0, "covariates": None,
            "handles_missing_images": handles_missing, "model_name": "small_cnn"}


def test_a_channel_no_lesion_has_is_refused_unless_the_model_handles_missing_images():
    image, present, _ = _inputs()
    present[:, 1] = False
    patches = _patches(image, present, np.nan)
    with pytest.raises(ValueError, match=r"channel\(s\) \['baseline_adc'\].*does not handle missing images"):
        check_channels(FoldEnsemble(_meta(False), []), patches)
    notes = check_channels(FoldEnsemble(_meta(True), []), patches)
    assert any("baseline_adc: no image for any lesion" in n for n in notes)
    assert any("presurgery_adc: no image for 1 of 6 lesions" in n for n in notes)


def test_patches_of_other_channels_are_refused():
    image, present, _ = _inputs()
    patches = PatchSet(image, present, pd.DataFrame({"patient_id": ["P"] * 6, "lesion_id": list("abcdef"),
                                                      "pcr": 0}), list(reversed(CHANNELS)), 2.0, "k")
    with pytest.raises(ValueError, match="the fold models read"):
        check_channels(FoldEnsemble(_meta(True), []), patches)


def test_every_lesion_gets_a_row_with_its_missing_channels(tmp_path):
    folder, _ = _ensemble(tmp_path)
    ensemble = FoldEnsemble.load(folder)
    image, present, covariates = _inputs()
    pcr = np.array([1, 0, np.nan, 1, np.nan, 0])
    table = predict_lesions(ensemble, _patches(image, present, pcr), covariates)
    assert len(table) == 6 and (table.fold == ENSEMBLE_FOLD).all() and (table.folds == "0;1;2").all()
    assert table.missing_channels.tolist()[2] == "presurgery_adc" and table.missing_channels.tolist()[0] == ""
    assert table.pcr.isna().sum() == 2
    labelled = labelled_rows(table)
    assert len(labelled) == 4 and labelled.pcr.dtype.kind == "i"
    one = predict_lesions(ensemble, _patches(image, present, pcr), covariates, folds=[2])
    assert (one.fold == 2).all() and (one.n_folds == 1).all() and (one.prob_pcr_sd == 0).all()
