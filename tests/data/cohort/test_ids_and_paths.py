"""Ids that become file names and paths that name cohort files are confined (validation)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from dlm_ml.data.cohort import load_cohort, schema, validate_cohort

UNSAFE_IDS = ["../../../../x", "a/b", "..", ".hidden", "P 1", "x..y", "-rf", "P1\\..\\x"]


def _edit(root, name, fn):
    table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    fn(table).to_csv(root / name, index=False)


def _set(root, name, row, col, value):
    def change(t):
        t.loc[row, col] = value
        return t
    _edit(root, name, change)


def _errors(root):
    report, cohort = validate_cohort(root)
    assert cohort is None, "the cohort must be refused"
    return [str(p) for p in report.errors]


@pytest.mark.parametrize("value", UNSAFE_IDS)
@pytest.mark.parametrize(("name", "col", "row"), [
    (schema.PATIENTS_CSV, "patient_id", 1), (schema.LESIONS_CSV, "lesion_id", 0),
    (schema.LESIONS_CSV, "patient_id", 2), (schema.OUTCOMES_CSV, "lesion_id", 3),
    (schema.READINGS_CSV, "reader_id", 4), (schema.IMAGES_CSV, "patient_id", 5)])
def test_an_id_that_is_not_one_plain_path_component_is_refused_naming_file_line_and_id(
        handmade_cohort, name, col, row, value):
    _set(handmade_cohort, name, row, col, value)
    errors = _errors(handmade_cohort)
    expected = f"{col} {value!r} is not a plain id ({schema.SAFE_ID_RULE})"
    matching = [e for e in errors if e.startswith(f"{name} line {row + 2} (") and expected in e]
    assert len(matching) == 1, errors
    assert f"{col.removesuffix('_id')} {value}" in matching[0], "the problem names the id"


@pytest.mark.parametrize("value", ["P001", "P-001.a_b", "7", "007", "L" + "9" * 63])
def test_plain_ids_stay_valid(handmade_cohort, value):
    """What the importer (letters, digits, '.', '_', '-') and the generator (P0001, L1, R1) write."""
    for name in (schema.PATIENTS_CSV, schema.IMAGES_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV,
                 schema.READINGS_CSV):
        _edit(handmade_cohort, name, lambda t: t.assign(patient_id=t.patient_id.replace("P001", value)))
    cohort = load_cohort(handmade_cohort)
    assert value in set(cohort.patients.patient_id)


def test_a_modality_name_that_is_not_a_plain_name_is_refused(handmade_cohort):
    meta = yaml.safe_load((handmade_cohort / "cohort.yaml").read_text())
    meta["modalities"] = ["ct", "adc", "../pet"]
    (handmade_cohort / "cohort.yaml").write_text(yaml.safe_dump(meta))
    errors = _errors(handmade_cohort)
    assert any(e.startswith("cohort.yaml: modality name(s) ['../pet'] are not plain names") for e in errors), errors


@pytest.mark.parametrize("how", ["absolute", "climbing", "climbing_backslash", "windows_drive"])
def test_an_image_path_leaving_the_cohort_is_refused_naming_row_and_path_and_never_opened(handmade_cohort, how):
    # a readable image outside the cohort: accepted (and left out of the fingerprint) before
    outside = handmade_cohort.parent / "elsewhere" / "baseline_adc.nii.gz"
    outside.parent.mkdir()
    shutil.copy(handmade_cohort / "images/P002/baseline_adc.nii.gz", outside)
    written = {"absolute": str(outside), "climbing": "images/../../elsewhere/baseline_adc.nii.gz",
               "climbing_backslash": "..\\elsewhere\\baseline_adc.nii.gz", "windows_drive": "C:\\scans\\x.nii.gz"}[how]
    images = pd.read_csv(handmade_cohort / schema.IMAGES_CSV, dtype=str)
    row = int(images.index[(images.patient_id == "P002") & (images.timepoint == "baseline")
                           & (images.modality == "adc")][0])
    _set(handmade_cohort, schema.IMAGES_CSV, row, "path", written)
    errors = _errors(handmade_cohort)
    assert errors == [f"images.csv line {row + 2} (patient P002): path {written!r} must be relative to the cohort "
                      "folder, without '..' (a cohort is one folder: copied, fingerprinted and reproduced as one)"]


def test_a_mask_path_leaving_the_cohort_is_refused(handmade_cohort):
    _edit(handmade_cohort, schema.LESIONS_CSV,
          lambda t: t.assign(mask_path=["../masks/m.nii.gz"] + [""] * (len(t) - 1), mask_label=""))
    errors = _errors(handmade_cohort)
    assert any(e.startswith("lesions.csv line 2 (patient P001, lesion L1): mask_path '../masks/m.nii.gz' must be "
                            "relative to the cohort folder") for e in errors), errors


def test_a_symlink_inside_the_cohort_may_point_elsewhere(handmade_cohort):
    """Confinement is decided on the path as written: a cohort may link to a shared image store."""
    store = handmade_cohort.parent / "store" / "P001"
    shutil.move(handmade_cohort / "images/P001", store)
    (handmade_cohort / "images/P001").symlink_to(store, target_is_directory=True)
    cohort = load_cohort(handmade_cohort)
    assert cohort.image_path("P001", "baseline", "ct").is_file()
