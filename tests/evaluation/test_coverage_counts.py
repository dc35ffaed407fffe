"""coverage_counts: every lesion left out of the evaluation is counted, by reason."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from dlm_ml.evaluation.evaluate import coverage_counts


def _frame(rows, columns=("patient_id", "lesion_id")):
    return pd.DataFrame(rows, columns=list(columns))


def _cohort():
    # P1: L1 full; L2 no outcome; L3 outcome but no prediction. P2: L1 read by R1 only.
    lesions = _frame([("P1", "L1"), ("P1", "L2"), ("P1", "L3"), ("P2", "L1")])
    outcomes = _frame([("P1", "L1", 1), ("P1", "L3", 0), ("P2", "L1", 0)], ("patient_id", "lesion_id", "pcr"))
    readings = _frame([("R1", "P1", "L1"), ("R1", "P2", "L1"), ("R2", "P1", "L1"), ("R2", "P1", "L2")],
                      ("reader_id", "patient_id", "lesion_id"))
    return SimpleNamespace(lesions=lesions, outcomes=outcomes, readings=readings)


def test_every_reason_counted():
    predictions = _frame([("P1", "L1"), ("P1", "L2"), ("P2", "L1"), ("P9", "L1")])  # P9: not in the cohort
    assert coverage_counts(predictions, _cohort()) == {
        "lesions_in_cohort": 4, "patients_in_cohort": 2,
        "lesions_without_outcome": 1,      # P1/L2 (predicted, but no outcome: not evaluated)
        "lesions_without_prediction": 1,   # P1/L3 (has an outcome)
        "predictions_not_in_cohort": 1,    # P9/L1
        "lesions_evaluated": 2,            # P1/L1, P2/L1
        "lesions_without_reading_R1": 0,
        "lesions_without_reading_R2": 1,   # P2/L1; R2's reading of P1/L2 does not count (not evaluated)
    }


def test_ids_are_compared_as_given():
    """Leading zeros make different lesions; nothing matches by accident."""
    cohort = _cohort()
    cohort.lesions = _frame([("P1", "L01")])
    cohort.outcomes = _frame([("P1", "L01", 1)], ("patient_id", "lesion_id", "pcr"))
    counts = coverage_counts(_frame([("P1", "L1")]), cohort)
    assert counts["lesions_evaluated"] == 0 and counts["lesions_without_prediction"] == 1
    assert counts["predictions_not_in_cohort"] == 1


def test_reader_without_any_evaluated_lesion():
    cohort = _cohort()
    cohort.readings = pd.concat([cohort.readings, _frame([("R3", "P1", "L3")], ("reader_id", "patient_id",
                                                                               "lesion_id"))])
    counts = coverage_counts(_frame([("P1", "L1"), ("P2", "L1")]), cohort)
    assert counts["lesions_without_reading_R3"] == 2 and counts["lesions_evaluated"] == 2
