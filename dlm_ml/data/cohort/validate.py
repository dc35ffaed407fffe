"""Checking a cohort folder, reporting every problem at once.

Each problem names the file, the line (header = line 1) and the ids involved. Lesions that
cannot be used for a stated reason (no outcome) are *exclusions*: counted and reported,
never dropped silently.

A cohort that is only to be predicted (a new site, outcomes not yet known) is validated with
``require_outcomes=False``: ``outcomes.csv`` and ``readings.csv`` may then be absent, and a
lesion without outcome is predicted rather than excluded. Every other check is the same.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.data.cohort.load import Cohort, cohort_from_tables, empty_table, load_meta, read_table
from dlm_ml.data.cohort.problems import Problem, ValidationReport
from dlm_ml.data.imaging.image_header import ImageHeader, read_image_header
from dlm_ml.data.imaging.integrity import ImageIntegrityError


def _ids(row, *cols: str) -> str:
    names = {"patient_id": "patient", "lesion_id": "lesion", "reader_id": "reader"}
    return ", ".join(f"{names.get(c, c)} {getattr(row, c)}" for c in cols)


def _check_ids(table: pd.DataFrame, name: str, cols: tuple[str, ...], errors: list[Problem]) -> None:
    """Key columns ``cols`` are filled and unique; ids among them follow :data:`schema.SAFE_ID`
    (they become file names: exports, QA pictures, saliency maps)."""
    for c in cols:
        for row in table[table[c].isna()].itertuples():
            errors.append(Problem(name, row.csv_line, "", f"empty {c}"))
        if c in schema.ID_COLUMNS:
            for row in table[table[c].notna() & ~table[c].map(schema.is_safe_id)].itertuples():
                errors.append(Problem(name, row.csv_line, _ids(row, *(k for k in cols if k in schema.ID_COLUMNS)),
                                      f"{c} {getattr(row, c)!r} is not a plain id ({schema.SAFE_ID_RULE}): "
                                      "ids become file and folder names"))
    dup = table[table.duplicated(list(cols), keep="first") & table[list(cols)].notna().all(axis=1)]
    for row in dup.itertuples():
        same = (table[list(cols)] == pd.Series({c: getattr(row, c) for c in cols})).all(axis=1)
        first = table[same]["csv_line"].iloc[0]
        errors.append(Problem(name, row.csv_line, _ids(row, *cols), f"duplicate of line {first}"))


def _check_binary(table: pd.DataFrame, name: str, col: str, id_cols: tuple[str, ...], errors: list[Problem]) -> None:
    for row in table.itertuples():
        value = getattr(row, col)
        if value not in ("0", "1"):
            errors.append(Problem(name, row.csv_line, _ids(row, *id_cols), f"{col} must be 0 or 1, got {value!r}"))


def _check_number(table: pd.DataFrame, name: str, col: str, id_cols: tuple[str, ...], errors: list[Problem],
                  positive: bool = False) -> None:
    for row in table.itertuples():
        value = getattr(row, col)
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or (positive and x <= 0):
            need = "a positive number" if positive else "a finite number"
            errors.append(Problem(name, row.csv_line, _ids(row, *id_cols), f"{col} must be {need}, got {value!r}"))


def _check_measurement(table: pd.DataFrame, name: str, col: str, id_cols: tuple[str, ...],
                       errors: list[Problem]) -> None:
    """An optional measurement: empty (not recorded) or a finite number >= 0."""
    for row in table.itertuples():
        value = getattr(row, col)
        if pd.isna(value) or (isinstance(value, str) and not value.strip()):
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or x < 0:
            errors.append(Problem(name, row.csv_line, _ids(row, *id_cols),
                                  f"{col} must be empty or a number >= 0 (0 = no longer seen), got {value!r}"))


def _check_known(table: pd.DataFrame, name: str, cols: tuple[str, ...], known: set, what: str,
                 errors: list[Problem]) -> None:
    for row in table.itertuples():
        key = tuple(getattr(row, c) for c in cols)
        key = key[0] if len(key) == 1 else key
        if key not in known:
            errors.append(Problem(name, row.csv_line, _ids(row, *cols), f"unknown {what}"))



def _check_rows(meta: dict, tables: dict[str, pd.DataFrame], errors: list[Problem]) -> None:
    """Ids, references between tables, declared timepoints/modalities, numbers and binary values."""
    patients, images, lesions, outcomes, readings = (tables[n] for n in (
        schema.PATIENTS_CSV, schema.IMAGES_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV, schema.READINGS_CSV))
    _check_ids(patients, schema.PATIENTS_CSV, ("patient_id",), errors)
    _check_ids(images, schema.IMAGES_CSV, ("patient_id", "timepoint", "modality"), errors)
    _check_ids(lesions, schema.LESIONS_CSV, schema.LESION_KEY, errors)
    _check_ids(outcomes, schema.OUTCOMES_CSV, schema.LESION_KEY, errors)
    _check_ids(readings, schema.READINGS_CSV, ("reader_id",) + schema.LESION_KEY, errors)

    known_patients = set(patients["patient_id"].dropna())
    known_lesions = set(zip(lesions["patient_id"], lesions["lesion_id"]))
    for name, table in ((schema.IMAGES_CSV, images), (schema.LESIONS_CSV, lesions)):
        _check_known(table, name, ("patient_id",), known_patients, "patient (not in patients.csv)", errors)
    for name, table in ((schema.OUTCOMES_CSV, outcomes), (schema.READINGS_CSV, readings)):
        _check_known(table, name, schema.LESION_KEY, known_lesions, "lesion (not in lesions.csv)", errors)

    for row in images.itertuples():
        if row.timepoint not in meta["timepoints"]:
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, _ids(row, "patient_id"),
                                  f"unknown timepoint {row.timepoint!r}; cohort.yaml declares {meta['timepoints']}"))
        if row.modality not in meta["modalities"]:
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, _ids(row, "patient_id"),
                                  f"unknown modality {row.modality!r}; cohort.yaml declares {meta['modalities']}"))
        if not isinstance(row.path, str) or not row.path.strip():
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, _ids(row, "patient_id"),
                                  "empty path (a missing image is a missing row)"))

    for col in ("x_mm", "y_mm", "z_mm"):
        _check_number(lesions, schema.LESIONS_CSV, col, schema.LESION_KEY, errors)
    _check_number(lesions, schema.LESIONS_CSV, "diameter_mm", schema.LESION_KEY, errors, positive=True)
    if schema.DIAMETER_PRESURGERY in lesions.columns:
        _check_measurement(lesions, schema.LESIONS_CSV, schema.DIAMETER_PRESURGERY, schema.LESION_KEY, errors)
    _check_binary(outcomes, schema.OUTCOMES_CSV, "pcr", schema.LESION_KEY, errors)
    _check_binary(outcomes, schema.OUTCOMES_CSV, "resected", schema.LESION_KEY, errors)
    for row in outcomes.itertuples():
        if row.reference not in schema.REFERENCES:
            errors.append(Problem(schema.OUTCOMES_CSV, row.csv_line, _ids(row, *schema.LESION_KEY),
                                  f"reference must be one of {list(schema.REFERENCES)}, got {row.reference!r}"))
    _check_number(readings, schema.READINGS_CSV, "score", ("reader_id",) + schema.LESION_KEY, errors)
    _check_binary(readings, schema.READINGS_CSV, "call", ("reader_id",) + schema.LESION_KEY, errors)


# Absolute on any system a cohort may have been written on: /x, \\server\x, C:\x (and drive-relative C:x).
_ABSOLUTE = re.compile(r"[/\\]|[A-Za-z]:")


def _check_paths(tables: dict[str, pd.DataFrame], errors: list[Problem]) -> pd.Series:
    """Every file a table names (``images.csv`` path, ``lesions.csv`` mask_path) is relative to
    the cohort folder and holds no ``..``: a cohort is one folder, copied, fingerprinted and
    reproduced as one. Decided on the path as written, so a symlink inside the cohort may point
    elsewhere (the fingerprint hashes what it points to). Returns, per ``images.csv`` row, whether
    its path stays inside."""
    images = tables[schema.IMAGES_CSV]
    inside = pd.Series(True, index=images.index)
    for name, table, col, id_cols in ((schema.IMAGES_CSV, images, "path", ("patient_id",)),
                                      (schema.LESIONS_CSV, tables[schema.LESIONS_CSV], "mask_path",
                                       schema.LESION_KEY)):
        if col not in table.columns:
            continue
        for index, row in zip(table.index, table.itertuples()):
            written = getattr(row, col)
            if not isinstance(written, str) or not written.strip() or not _leaves_cohort(written):
                continue
            errors.append(Problem(name, row.csv_line, _ids(row, *id_cols),
                                  f"{col} {written!r} must be relative to the cohort folder, without '..' "
                                  "(a cohort is one folder: copied, fingerprinted and reproduced as one)"))
            if table is images:
                inside[index] = False
    return inside


def _leaves_cohort(written: str) -> bool:
    """Whether a table's path is absolute (``/x``, ``\\\\server\\x``, ``C:\\x``) or has a ``..``
    component (``/`` or ``\\`` separated): a cohort written on one system is read on another."""
    return bool(_ABSOLUTE.match(written)) or ".." in re.split(r"[/\\]", written)


def _check_images(root: Path, images: pd.DataFrame, lesions: pd.DataFrame, errors: list[Problem]) -> None:
    """Every image exists and its header reads and is sound (one scalar component, within the
    size limits, voxel data as long as declared: every reason of an image in one problem);
    every lesion centre (LPS mm) lies inside its patient's baseline CT."""
    headers: dict[tuple[str, str, str], ImageHeader] = {}
    for row in images.itertuples():
        if not isinstance(row.path, str) or not row.path.strip():
            continue
        path = root / row.path
        where = _ids(row, "patient_id") + f", {row.timepoint} {row.modality}"
        if not path.exists():
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, where, f"image file not found: {row.path}"))
            continue
        try:
            headers[(row.patient_id, row.timepoint, row.modality)] = read_image_header(path)
        except ImageIntegrityError as err:
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, where,
                                  f"image {row.path} cannot be used: {'; '.join(err.problems)}"))
        except (ValueError, RuntimeError, OSError) as err:
            errors.append(Problem(schema.IMAGES_CSV, row.csv_line, where, f"unreadable image {row.path}: {err}"))
    reference = (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY)
    for row in lesions.itertuples():
        header = headers.get((row.patient_id, *reference))
        if header is None:
            if (row.patient_id, *reference) not in set(zip(images.patient_id, images.timepoint, images.modality)):
                errors.append(Problem(schema.LESIONS_CSV, row.csv_line, _ids(row, *schema.LESION_KEY),
                                      "patient has no baseline CT, the space lesion positions refer to"))
            continue
        try:
            point = tuple(float(getattr(row, c)) for c in ("x_mm", "y_mm", "z_mm"))
        except ValueError:
            continue  # already reported as a non-numeric coordinate
        index = header.TransformPhysicalPointToContinuousIndex(point)
        size = header.GetSize()
        if not all(-0.5 <= i <= s - 0.5 for i, s in zip(index, size)):
            errors.append(Problem(schema.LESIONS_CSV, row.csv_line, _ids(row, *schema.LESION_KEY),
                                  f"lesion centre {point} mm lies outside the baseline CT "
                                  f"(voxel index {tuple(round(i, 1) for i in index)}, size {size})"))


def _exclusions_and_warnings(tables: dict[str, pd.DataFrame], report: ValidationReport, *,
                             require_outcomes: bool = True, absent: tuple[str, ...] = ()) -> None:
    """Lesions without outcome become exclusions; lesions without reading and patients without
    image become warnings.

    For prediction (``require_outcomes=False``) nothing is excluded: a lesion without outcome is
    predicted. An ``absent`` outcomes or readings table is then said once, not per lesion."""
    patients, images, lesions, outcomes, readings = (tables[n] for n in (
        schema.PATIENTS_CSV, schema.IMAGES_CSV, schema.LESIONS_CSV, schema.OUTCOMES_CSV, schema.READINGS_CSV))
    with_outcome = set(zip(outcomes["patient_id"], outcomes["lesion_id"]))
    with_reading = set(zip(readings["patient_id"], readings["lesion_id"]))
    lesion_keys = list(zip(lesions["patient_id"], lesions["lesion_id"]))
    no_outcome = [(p, lid) for p, lid in lesion_keys if (p, lid) not in with_outcome]
    if require_outcomes:
        exclusions = [{"patient_id": p, "lesion_id": lid, "reason": "no outcome in outcomes.csv"}
                      for p, lid in no_outcome]
        report.exclusions = pd.DataFrame(exclusions, columns=["patient_id", "lesion_id", "reason"])
    else:
        _coverage_warning(report, schema.OUTCOMES_CSV, absent, no_outcome, "have no outcome",
                          "prediction only (every lesion is predicted, none has an outcome to evaluate against)",
                          "they are predicted, not excluded")
    no_reading = [(p, lid) for p, lid in lesion_keys if (p, lid) not in with_reading]
    _coverage_warning(report, schema.READINGS_CSV, absent, no_reading, "have no reading",
                      "no reader to compare the predictions with", "they are counted in the evaluation")
    for p in sorted(set(patients["patient_id"].dropna()) - set(images["patient_id"])):
        report.warnings.append(Problem(schema.IMAGES_CSV, None, f"patient {p}", "patient has no image"))


def _coverage_warning(report: ValidationReport, name: str, absent: tuple[str, ...], missing: list, lacking: str,
                      when_absent: str, consequence: str) -> None:
    """One warning for table ``name``: the file is absent (said once), or ``missing`` lesion keys
    (patient, lesion) have no row in it (counted, with an example)."""
    if name in absent:
        report.warnings.append(Problem(name, None, "", f"file absent: {when_absent}"))
    elif missing:
        report.warnings.append(Problem(name, None, "", f"{len(missing)} lesion(s) {lacking} (e.g. patient "
                                                       f"{missing[0][0]}, lesion {missing[0][1]}); {consequence}"))


def validate_cohort(root: str | Path, *, check_images: bool = True,
                    require_outcomes: bool = True) -> tuple[ValidationReport, Cohort | None]:
    """Check a cohort folder; return the report and, when there is no error, the cohort.

    Parameters
    ----------
    root : path
        The cohort folder (docs/design.md §3 layout).
    check_images : bool
        Open every image header (existence, readability, geometry) and check that each
        lesion centre lies inside its patient's baseline CT. Costs one header read per image.
    require_outcomes : bool
        ``True`` (training, evaluation): ``outcomes.csv`` and ``readings.csv`` must exist and a
        lesion without outcome is an exclusion. ``False`` (prediction): either may be absent,
        then read as a table with no row and its required columns; when present it is checked
        as always; no lesion is excluded for lack of an outcome (``report.exclusions`` is empty).
    """
    root = Path(root).resolve()
    report = ValidationReport(root)
    errors = report.errors
    if not root.is_dir():
        errors.append(Problem(str(root), None, "", "cohort folder does not exist"))
        return report, None
    meta = load_meta(root, errors)
    optional = () if require_outcomes else (schema.OUTCOMES_CSV, schema.READINGS_CSV)
    # Only a path that does not exist at all is "absent"; anything else there is read and judged.
    absent = tuple(name for name in optional if not (root / name).exists())
    read = {name: empty_table(name) if name in absent else read_table(root, name, errors)
            for name in schema.REQUIRED_COLUMNS}
    if any(t is None for t in read.values()):
        return report, None
    tables: dict[str, pd.DataFrame] = {name: t for name, t in read.items() if t is not None}
    _check_rows(meta, tables, errors)
    inside = _check_paths(tables, errors)
    if check_images:
        # a path leaving the cohort is reported above and never opened: blanked, the row is
        # skipped by the image checks but still counts as the patient's image
        images = tables[schema.IMAGES_CSV].assign(path=tables[schema.IMAGES_CSV].path.where(inside, ""))
        _check_images(root, images, tables[schema.LESIONS_CSV], errors)
    _exclusions_and_warnings(tables, report, require_outcomes=require_outcomes, absent=absent)
    if errors:
        return report, None
    return report, cohort_from_tables(root, meta, tables, report.exclusions)


def load_cohort(root: str | Path, *, check_images: bool = True, require_outcomes: bool = True) -> Cohort:
    """Validate and load a cohort; raise :class:`CohortValidationError` listing every error.
    ``require_outcomes=False`` loads a cohort for prediction (see :func:`validate_cohort`)."""
    report, cohort = validate_cohort(root, check_images=check_images, require_outcomes=require_outcomes)
    report.raise_if_errors()
    assert cohort is not None
    return cohort
