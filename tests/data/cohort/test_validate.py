"""Every validation error on a real broken file or table, all reported at once."""

from __future__ import annotations

import pandas as pd
import pytest

from dlm_ml.data.cohort import CohortValidationError, load_cohort, validate_cohort


def _edit(root, name, fn):
    table = pd.read_csv(root / name, dtype=str)
    fn(table).to_csv(root / name, index=False)


def _errors(root):
    report, cohort = validate_cohort(root)
    assert cohort is None
    return [str(p) for p in report.errors]


def test_missing_image_file(handmade_cohort):
    (handmade_cohort / "images/P002/presurgery_adc.nii.gz").unlink()
    errors = _errors(handmade_cohort)
    assert any("images.csv line" in e and "patient P002" in e and "image file not found" in e for e in errors)


def test_unreadable_image(handmade_cohort):
    (handmade_cohort / "images/P003/baseline_adc.nii.gz").write_bytes(b"not an image at all")
    errors = _errors(handmade_cohort)
    assert any("patient P003" in e and "unreadable image" in e for e in errors)


def test_duplicate_ids(handmade_cohort):
    _edit(handmade_cohort, "lesions.csv", lambda t: pd.concat([t, t.iloc[[0]]]))
    _edit(handmade_cohort, "patients.csv", lambda t: pd.concat([t, t.iloc[[1]]]))
    errors = _errors(handmade_cohort)
    assert any(e.startswith("lesions.csv line 10 (patient P001, lesion L1): duplicate of line 2") for e in errors)
    assert any(e.startswith("patients.csv line 6 (patient P002): duplicate of line 3") for e in errors)


def test_unknown_timepoint_and_modality(handmade_cohort):
    def bad(t):
        t.loc[0, "timepoint"] = "week6"
        t.loc[1, "modality"] = "pet"
        return t
    _edit(handmade_cohort, "images.csv", bad)
    errors = _errors(handmade_cohort)
    assert any("images.csv line 2" in e and "unknown timepoint 'week6'" in e for e in errors)
    assert any("images.csv line 3" in e and "unknown modality 'pet'" in e for e in errors)


def test_labels_outside_binary(handmade_cohort):
    def bad(t):
        t.loc[2, "pcr"] = "2"
        t.loc[3, "resected"] = "yes"
        t.loc[4, "reference"] = "guess"
        return t
    _edit(handmade_cohort, "outcomes.csv", bad)
    _edit(handmade_cohort, "readings.csv", lambda t: t.assign(call=t.call.where(t.index != 0, "0.5")))
    errors = _errors(handmade_cohort)
    assert any("outcomes.csv line 4" in e and "pcr must be 0 or 1, got '2'" in e for e in errors)
    assert any("outcomes.csv line 5" in e and "resected must be 0 or 1" in e for e in errors)
    assert any("outcomes.csv line 6" in e and "reference must be one of" in e for e in errors)
    assert any("readings.csv line 2 (reader R1, patient P001, lesion L1)" in e and "call" in e for e in errors)


def test_lesion_of_unknown_patient(handmade_cohort):
    def bad(t):
        t.loc[0, "patient_id"] = "P999"
        return t
    _edit(handmade_cohort, "lesions.csv", bad)
    errors = _errors(handmade_cohort)
    assert any("lesions.csv line 2 (patient P999)" in e and "unknown patient" in e for e in errors)


def test_lesion_centre_outside_baseline(handmade_cohort):
    def bad(t):
        t.loc[1, "x_mm"] = "250.0"
        return t
    _edit(handmade_cohort, "lesions.csv", bad)
    errors = _errors(handmade_cohort)
    assert any("lesions.csv line 3 (patient P001, lesion L2)" in e and "outside the baseline CT" in e for e in errors)


def test_missing_column_and_yaml_key(handmade_cohort):
    _edit(handmade_cohort, "readings.csv", lambda t: t.drop(columns=["score"]))
    (handmade_cohort / "cohort.yaml").write_text("name: x\ntimepoints: [baseline]\n")
    report, _ = validate_cohort(handmade_cohort)
    text = [str(p) for p in report.errors]
    assert any("readings.csv line 1" in e and "missing required column(s): score" in e for e in text)
    assert any("cohort.yaml" in e and "missing key 'version'" in e for e in text)


def test_all_problems_reported_at_once(handmade_cohort):
    (handmade_cohort / "images/P002/presurgery_adc.nii.gz").unlink()
    _edit(handmade_cohort, "outcomes.csv", lambda t: t.assign(pcr=t.pcr.where(t.index != 0, "7")))
    def bad(t):
        t.loc[0, "diameter_mm"] = "-3"
        return t
    _edit(handmade_cohort, "lesions.csv", bad)
    with pytest.raises(CohortValidationError) as info:
        load_cohort(handmade_cohort)
    message = str(info.value)
    assert "3 error(s)" in message
    assert "image file not found" in message and "pcr must be 0 or 1" in message and "diameter_mm" in message


def test_lesion_without_outcome_is_excluded_and_counted(handmade_cohort):
    _edit(handmade_cohort, "outcomes.csv", lambda t: t.iloc[1:])
    cohort = load_cohort(handmade_cohort)
    assert cohort.exclusions.to_dict("records") == [
        {"patient_id": "P001", "lesion_id": "L1", "reason": "no outcome in outcomes.csv"}]
    assert len(cohort.labelled_lesions()) == 7
    report, _ = validate_cohort(handmade_cohort)
    assert "1 lesion(s) excluded" in report.summary()


def test_presurgery_diameter_empty_zero_or_positive(handmade_cohort):
    values = ["", "0", "7.5", "-1", "seen"] + [""] * 10

    def add(t):
        return t.assign(diameter_presurgery_mm=values[: len(t)])

    _edit(handmade_cohort, "lesions.csv", add)
    errors = [e for e in _errors(handmade_cohort) if "diameter_presurgery_mm" in e]
    assert len(errors) == 2
    assert errors[0].startswith("lesions.csv line 5 (patient P002, lesion L2): diameter_presurgery_mm must be empty")
    assert "'seen'" in errors[1]


def test_presurgery_diameter_typed_on_load(handmade_cohort):
    _edit(handmade_cohort, "lesions.csv", lambda t: t.assign(diameter_presurgery_mm=["", "0"] + ["4.5"] * (len(t) - 2)))
    lesions = load_cohort(handmade_cohort).lesions
    assert lesions.diameter_presurgery_mm.isna().iloc[0] and lesions.diameter_presurgery_mm.iloc[1] == 0.0
    assert lesions.diameter_presurgery_mm.dtype == float
