"""The cohort layout on disk: one place for file names, columns and vocabularies.

A cohort is a folder holding ``cohort.yaml`` and the tables below; every path in
a table is relative to that folder. Ids are pseudonymous strings.
"""

from __future__ import annotations

import re

# Ordered: the surgical decision is taken at ``presurgery``; ``followup`` belongs
# to the reference standard and is refused as a model input unless configured.
TIMEPOINTS: tuple[str, ...] = ("baseline", "presurgery", "followup")
DECISION_TIMEPOINT = "presurgery"
POST_DECISION_TIMEPOINTS: tuple[str, ...] = ("followup",)


def check_input_timepoints(timepoints, allow_post_decision: bool) -> None:
    """Refuse unknown timepoints, and timepoints after the surgical decision as model input
    unless ``allow_post_decision`` says so explicitly (they belong to the reference standard)."""
    unknown = [t for t in timepoints if t not in TIMEPOINTS]
    if unknown:
        raise ValueError(f"unknown timepoint(s) {unknown}; known: {list(TIMEPOINTS)}")
    leaking = [t for t in timepoints if t in POST_DECISION_TIMEPOINTS]
    if leaking and not allow_post_decision:
        raise ValueError(
            f"timepoint(s) {leaking} come after the surgical decision and belong to the reference "
            "standard; set allow_post_decision=true to use them as model input on purpose")

# ct: portal-venous CT in Hounsfield units; adc: ADC map in µm²/s (1e-6 mm²/s).
MODALITIES: tuple[str, ...] = ("ct", "adc")
REFERENCE_MODALITY = "ct"
REFERENCE_TIMEPOINT = "baseline"

REFERENCES: tuple[str, ...] = ("pathology", "follow_up")

# Ids and modality names become file and folder names (patch exports, QA pictures, saliency maps),
# so each must be one plain path component. One rule, checked by validation and by the importer:
# 1-64 letters, digits, '.', '_', '-', starting with a letter or digit (so never '.', '..', a
# hidden file or an option), with no '..' anywhere.
SAFE_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_ID_RULE = "1-64 letters, digits, '.', '_', '-', starting with a letter or digit, no '..'"
# The id columns of the tables, each checked against SAFE_ID.
ID_COLUMNS: tuple[str, ...] = ("patient_id", "lesion_id", "reader_id")


def is_safe_id(value) -> bool:
    """Whether ``value`` is a string that :data:`SAFE_ID` matches in full."""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


COHORT_YAML = "cohort.yaml"
PATIENTS_CSV = "patients.csv"
IMAGES_CSV = "images.csv"
LESIONS_CSV = "lesions.csv"
OUTCOMES_CSV = "outcomes.csv"
READINGS_CSV = "readings.csv"
TRUTH_DIR = "truth"

COHORT_YAML_KEYS: tuple[str, ...] = ("name", "version", "timepoints", "modalities")

# Required columns first; further columns are allowed (clinical covariates, masks).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    PATIENTS_CSV: ("patient_id", "site"),
    IMAGES_CSV: ("patient_id", "timepoint", "modality", "path"),
    LESIONS_CSV: ("patient_id", "lesion_id", "x_mm", "y_mm", "z_mm", "diameter_mm"),
    OUTCOMES_CSV: ("patient_id", "lesion_id", "pcr", "reference", "resected"),
    READINGS_CSV: ("reader_id", "patient_id", "lesion_id", "score", "call"),
}
# The lesion's largest diameter on the presurgery CT as the site measured it (mm); 0 where the
# lesion is no longer seen (a disappearing lesion, the case definition the clinical policy
# "disappeared => leave in place" acts on); empty where not recorded.
DIAMETER_PRESURGERY = "diameter_presurgery_mm"
OPTIONAL_LESION_COLUMNS: tuple[str, ...] = ("mask_path", "mask_label", DIAMETER_PRESURGERY)

# Predictions table written by training and read by evaluation: one row per lesion.
PREDICTION_COLUMNS: tuple[str, ...] = ("patient_id", "lesion_id", "fold", "prob_pcr", "pcr")
# Optional column of a predictions table: P(pCR) before post-hoc recalibration (prob_pcr is then
# the recalibrated probability); the evaluation reports calibration before and after when present.
UNCALIBRATED_PROB = "prob_pcr_uncalibrated"
LESION_KEY: tuple[str, str] = ("patient_id", "lesion_id")
