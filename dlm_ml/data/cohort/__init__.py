"""A cohort on disk: its schema, loading and validation, and its content fingerprint.

Modules: ``schema`` (file and column names), ``load`` (reading a folder into a :class:`Cohort`),
``problems`` (what validation reports), ``validate`` (the checks, :func:`validate_cohort`,
:func:`load_cohort`), ``fingerprint`` (content hashes for caches and provenance).
"""

from dlm_ml.data.cohort import fingerprint, schema
from dlm_ml.data.cohort.load import Cohort
from dlm_ml.data.cohort.problems import CohortValidationError, Problem, ValidationReport
from dlm_ml.data.cohort.validate import load_cohort, validate_cohort

__all__ = ["Cohort", "CohortValidationError", "Problem", "ValidationReport", "fingerprint", "load_cohort", "schema",
           "validate_cohort"]
