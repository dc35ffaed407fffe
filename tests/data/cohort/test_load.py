"""Loading a valid cohort: paths resolved, numbers typed, ids kept as strings."""

from __future__ import annotations

import pandas as pd

from dlm_ml.data.cohort import load_cohort


def _edit(root, name, fn):
    table = pd.read_csv(root / name, dtype=str)
    fn(table).to_csv(root / name, index=False)


def test_valid_cohort_loads(handmade_cohort):
    cohort = load_cohort(handmade_cohort)
    assert len(cohort.lesions) == 8
    assert cohort.image_path("P001", "baseline", "ct").is_file()
    assert cohort.image_path("P001", "followup", "ct") is None
    assert len(cohort.exclusions) == 0


def test_ids_stay_strings(handmade_cohort):
    """Pseudonyms like "007" must not become the number 7 on the way through the tables."""
    for name in ("patients.csv", "images.csv", "lesions.csv", "outcomes.csv", "readings.csv"):
        _edit(handmade_cohort, name, lambda t: t.assign(patient_id=t.patient_id.str.replace("P", "00")))
    cohort = load_cohort(handmade_cohort)
    assert "00001" in set(cohort.lesions.patient_id) and "00001" in set(cohort.readings.patient_id)
    assert cohort.image_path("00001", "baseline", "ct").is_file()
    assert len(cohort.labelled_lesions()) == 8
