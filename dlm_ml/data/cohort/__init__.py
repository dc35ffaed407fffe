"""A cohort on disk: its schema, loading and validation, and its content fingerprint."""

from dlm_ml.data.cohort.cohort import (
    Cohort,
    CohortValidationError,
    Problem,
    ValidationReport,
    load_cohort,
    validate_cohort,
)

__all__ = ["Cohort", "CohortValidationError", "Problem", "ValidationReport", "load_cohort", "validate_cohort"]
