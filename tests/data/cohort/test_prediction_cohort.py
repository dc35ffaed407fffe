"""A cohort to be predicted (a new site): outcomes.csv and readings.csv may be absent; a lesion
without outcome is predicted, not excluded; everything else is checked as for training."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.cohort import CohortValidationError, load_cohort, schema, validate_cohort
from dlm_ml.data.synthetic import generate_cohort, make_config


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return generate_cohort(tmp_path_factory.mktemp("prediction") / "cohort", make_config("tiny", seed=5, n_patients=4),
                           progress=False)


@pytest.fixture
def cohort_root(synthetic_root, tmp_path):
    return shutil.copytree(synthetic_root, tmp_path / "cohort")


def _drop_outcomes_and_readings(root):
    (root / schema.OUTCOMES_CSV).unlink()
    (root / schema.READINGS_CSV).unlink()


def _edit(root, name, fn):
    table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    fn(table).to_csv(root / name, index=False)


def test_without_outcomes_and_readings_the_cohort_loads_for_prediction(cohort_root):
    n_lesions = len(pd.read_csv(cohort_root / schema.LESIONS_CSV))
    _drop_outcomes_and_readings(cohort_root)
    report, cohort = validate_cohort(cohort_root, require_outcomes=False)
    assert report.ok and cohort is not None
    assert len(cohort.lesions) == n_lesions and len(cohort.exclusions) == 0 and len(report.exclusions) == 0
    for table, name in ((cohort.outcomes, schema.OUTCOMES_CSV), (cohort.readings, schema.READINGS_CSV)):
        assert len(table) == 0 and tuple(table.columns) == schema.REQUIRED_COLUMNS[name]
    # Typed as a table that has rows, so joins and filters behave the same.
    assert cohort.outcomes.pcr.dtype == np.int64 and cohort.readings.score.dtype == np.float64
    assert len(cohort.labelled_lesions()) == 0
    summary = report.summary()
    assert "0 lesion(s) excluded" in summary
    assert "outcomes.csv: file absent: prediction only" in summary
    assert "readings.csv: file absent" in summary
    assert "lesion(s) have no" not in summary  # said once per table, not per lesion
    assert load_cohort(cohort_root, require_outcomes=False).lesions.equals(cohort.lesions)


def test_by_default_absent_outcomes_and_readings_are_refused_by_name(cohort_root):
    _drop_outcomes_and_readings(cohort_root)
    report, cohort = validate_cohort(cohort_root)
    assert cohort is None
    assert [str(p) for p in report.errors] == ["outcomes.csv: file is missing", "readings.csv: file is missing"]
    with pytest.raises(CohortValidationError, match="outcomes.csv: file is missing"):
        load_cohort(cohort_root)


def test_a_present_outcomes_table_is_still_checked_row_by_row(cohort_root):
    (cohort_root / schema.READINGS_CSV).unlink()

    def bad(t):
        t.loc[1, "pcr"] = "maybe"
        t.loc[2, "lesion_id"] = "L99"
        return t
    _edit(cohort_root, schema.OUTCOMES_CSV, bad)
    report, cohort = validate_cohort(cohort_root, require_outcomes=False)
    assert cohort is None
    errors = [str(p) for p in report.errors]
    assert any(e.startswith("outcomes.csv line 3 (patient ") and "pcr must be 0 or 1, got 'maybe'" in e
               for e in errors), errors
    assert any(e.startswith("outcomes.csv line 4 (") and "lesion L99" in e and "unknown lesion" in e
               for e in errors), errors
    with pytest.raises(CohortValidationError, match="pcr must be 0 or 1"):
        load_cohort(cohort_root, require_outcomes=False)


def test_a_missing_required_column_of_a_present_table_is_reported(cohort_root):
    _edit(cohort_root, schema.READINGS_CSV, lambda t: t.drop(columns=["call"]))
    report, _ = validate_cohort(cohort_root, require_outcomes=False)
    assert [str(p) for p in report.errors] == ["readings.csv line 1: missing required column(s): call"]


def test_a_lesion_without_outcome_is_predicted_not_excluded(cohort_root):
    _edit(cohort_root, schema.OUTCOMES_CSV, lambda t: t.iloc[2:])
    report, cohort = validate_cohort(cohort_root, require_outcomes=False)
    assert cohort is not None and len(cohort.exclusions) == 0
    summary = report.summary()
    assert "0 lesion(s) excluded" in summary and "2 lesion(s) have no outcome" in summary
    assert "they are predicted, not excluded" in summary
    # The same cohort for training excludes them, as always.
    assert len(load_cohort(cohort_root).exclusions) == 2


def test_images_and_lesions_are_checked_as_for_training(cohort_root):
    _drop_outcomes_and_readings(cohort_root)
    images = pd.read_csv(cohort_root / schema.IMAGES_CSV, dtype=str)
    (cohort_root / images.path.iloc[1]).unlink()
    _edit(cohort_root, schema.LESIONS_CSV, lambda t: t.assign(x_mm=t.x_mm.where(t.index != 0, "5000")))
    report, cohort = validate_cohort(cohort_root, require_outcomes=False)
    assert cohort is None
    errors = [str(p) for p in report.errors]
    assert any("images.csv line 3" in e and "image file not found" in e for e in errors), errors
    assert any("lesions.csv line 2" in e and "outside the baseline CT" in e for e in errors), errors
