"""Load a cohort folder and check it, reporting every problem at once.

A problem names the file, the line (header = line 1) and the ids involved, so a
data manager can fix all of them in one pass. Lesions that cannot be used for a
stated reason (e.g. no outcome) are *exclusions*: counted and reported, never
dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging.image_header import read_image_header


@dataclass(frozen=True)
class Problem:
    """One finding of validation.

    Attributes
    ----------
    file : str
        Table or image file the finding is about, relative to the cohort folder.
    line : int or None
        Line in ``file`` (header = 1), when the finding is about one row.
    ids : str
        The patient / lesion / reader ids concerned, e.g. ``"patient P0003, lesion L2"``.
    message : str
        What is wrong.
    """

    file: str
    line: int | None
    ids: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file} line {self.line}"
        who = f" ({self.ids})" if self.ids else ""
        return f"{where}{who}: {self.message}"


class CohortValidationError(ValueError):
    """Raised when a cohort has errors; ``problems`` holds all of them."""

    def __init__(self, root: Path, problems: list[Problem]):
        self.root = root
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cohort {root} has {len(problems)} error(s):\n{lines}")


@dataclass
class ValidationReport:
    """Errors, warnings and lesion exclusions found in a cohort."""

    root: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    exclusions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["patient_id", "lesion_id", "reason"])
    )

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            raise CohortValidationError(self.root, self.errors)

    def summary(self) -> str:
        lines = [f"cohort {self.root}: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                 f"{len(self.exclusions)} lesion(s) excluded"]
        lines += [f"  error: {p}" for p in self.errors]
        lines += [f"  warning: {p}" for p in self.warnings]
        for reason, n in self.exclusions.groupby("reason").size().items():
            lines.append(f"  excluded: {n} lesion(s): {reason}")
        return "\n".join(lines)


@dataclass
class Cohort:
    """A validated cohort: its metadata and tables, paths resolved against ``root``.

    ``lesions`` holds every lesion of ``lesions.csv``; ``usable_lesions`` those with
    an outcome, i.e. all lesions minus ``exclusions``.
    """

    root: Path
    meta: dict
    patients: pd.DataFrame
    images: pd.DataFrame
    lesions: pd.DataFrame
    outcomes: pd.DataFrame
    readings: pd.DataFrame
    exclusions: pd.DataFrame

    @property
    def timepoints(self) -> list[str]:
        return list(self.meta["timepoints"])

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    def image_path(self, patient_id: str, timepoint: str, modality: str) -> Path | None:
        """Absolute path of one image, or ``None`` when the cohort has no such image."""
        key = (patient_id, timepoint, modality)
        rel = self._image_index.get(key)
        return None if rel is None else self.root / rel

    @property
    def _image_index(self) -> dict[tuple[str, str, str], str]:
        if not hasattr(self, "_index_cache"):
            self._index_cache = {
                (r.patient_id, r.timepoint, r.modality): r.path for r in self.images.itertuples()
            }
        return self._index_cache

    def labelled_lesions(self) -> pd.DataFrame:
        """Lesions joined with their outcome; lesions without outcome are left out
        here and listed in ``exclusions``."""
        return self.lesions.merge(self.outcomes, on=list(schema.LESION_KEY), how="inner")


def _read_table(root: Path, name: str, errors: list[Problem]) -> pd.DataFrame | None:
    path = root / name
    if not path.is_file():
        errors.append(Problem(name, None, "", "file is missing"))
        return None
    try:
        # Ids stay strings: "007" and "7" are different pseudonyms.
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        errors.append(Problem(name, None, "", f"cannot be parsed as CSV: {err}"))
        return None
    missing = [c for c in schema.REQUIRED_COLUMNS[name] if c not in table.columns]
    if missing:
        errors.append(Problem(name, 1, "", f"missing required column(s): {', '.join(missing)}"))
        return None
    table["csv_line"] = np.arange(2, len(table) + 2)
    return table


def _ids(row, *cols: str) -> str:
    names = {"patient_id": "patient", "lesion_id": "lesion", "reader_id": "reader"}
    return ", ".join(f"{names.get(c, c)} {getattr(row, c)}" for c in cols)


def _check_ids(table: pd.DataFrame, name: str, cols: tuple[str, ...], errors: list[Problem]) -> None:
    for c in cols:
        for row in table[table[c].isna()].itertuples():
            errors.append(Problem(name, row.csv_line, "", f"empty {c}"))
    dup = table[table.duplicated(list(cols), keep="first") & table[list(cols)].notna().all(axis=1)]
    for row in dup.itertuples():
        first = table[(table[list(cols)] == pd.Series({c: getattr(row, c) for c in cols})).all(axis=1)]["csv_line"].iloc[0]
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


def _check_known(table: pd.DataFrame, name: str, cols: tuple[str, ...], known: set, what: str,
                 errors: list[Problem]) -> None:
    for row in table.itertuples():
        key = tuple(getattr(row, c) for c in cols)
        key = key[0] if len(key) == 1 else key
        if key not in known:
            errors.append(Problem(name, row.csv_line, _ids(row, *cols), f"unknown {what}"))


def _load_meta(root: Path, errors: list[Problem]) -> dict:
    path = root / schema.COHORT_YAML
    if not path.is_file():
        errors.append(Problem(schema.COHORT_YAML, None, "", "file is missing"))
        return {"timepoints": list(schema.TIMEPOINTS), "modalities": list(schema.MODALITIES)}
    try:
        meta = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        errors.append(Problem(schema.COHORT_YAML, None, "", f"invalid YAML: {err}"))
        meta = {}
    if not isinstance(meta, dict):
        errors.append(Problem(schema.COHORT_YAML, None, "", "must be a mapping"))
        meta = {}
    for key in schema.COHORT_YAML_KEYS:
        if key not in meta:
            errors.append(Problem(schema.COHORT_YAML, None, "", f"missing key {key!r}"))
    timepoints = meta.get("timepoints") or list(schema.TIMEPOINTS)
    unknown = [t for t in timepoints if t not in schema.TIMEPOINTS]
    if unknown:
        errors.append(Problem(schema.COHORT_YAML, None, "",
                              f"unknown timepoint(s) {unknown}; known: {list(schema.TIMEPOINTS)}"))
    meta["timepoints"] = [t for t in timepoints if t in schema.TIMEPOINTS]
    meta["modalities"] = [str(m) for m in (meta.get("modalities") or list(schema.MODALITIES))]
    return meta


def validate_cohort(root: str | Path, *, check_images: bool = True) -> tuple[ValidationReport, Cohort | None]:
    """Check a cohort folder; return the report and, when there is no error, the cohort.

    Parameters
    ----------
    root : path
        The cohort folder (DESIGN §3 layout).
    check_images : bool
        Open every image header (existence, readability, geometry) and check that each
        lesion centre lies inside its patient's baseline CT. Costs one header read per image.
    """
    root = Path(root).resolve()
    report = ValidationReport(root)
    errors, warnings = report.errors, report.warnings
    if not root.is_dir():
        errors.append(Problem(str(root), None, "", "cohort folder does not exist"))
        return report, None
    meta = _load_meta(root, errors)
    tables = {name: _read_table(root, name, errors) for name in schema.REQUIRED_COLUMNS}
    if any(t is None for t in tables.values()):
        return report, None
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
    _check_binary(outcomes, schema.OUTCOMES_CSV, "pcr", schema.LESION_KEY, errors)
    _check_binary(outcomes, schema.OUTCOMES_CSV, "resected", schema.LESION_KEY, errors)
    for row in outcomes.itertuples():
        if row.reference not in schema.REFERENCES:
            errors.append(Problem(schema.OUTCOMES_CSV, row.csv_line, _ids(row, *schema.LESION_KEY),
                                  f"reference must be one of {list(schema.REFERENCES)}, got {row.reference!r}"))
    _check_number(readings, schema.READINGS_CSV, "score", ("reader_id",) + schema.LESION_KEY, errors)
    _check_binary(readings, schema.READINGS_CSV, "call", ("reader_id",) + schema.LESION_KEY, errors)

    headers: dict[tuple[str, str, str], sitk.ImageFileReader | None] = {}
    if check_images:
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

    with_outcome = set(zip(outcomes["patient_id"], outcomes["lesion_id"]))
    with_reading = set(zip(readings["patient_id"], readings["lesion_id"]))
    exclusions = [
        {"patient_id": p, "lesion_id": l, "reason": "no outcome in outcomes.csv"}
        for p, l in zip(lesions["patient_id"], lesions["lesion_id"]) if (p, l) not in with_outcome
    ]
    report.exclusions = pd.DataFrame(exclusions, columns=["patient_id", "lesion_id", "reason"])
    no_reading = [(p, l) for p, l in zip(lesions["patient_id"], lesions["lesion_id"]) if (p, l) not in with_reading]
    if no_reading:
        warnings.append(Problem(schema.READINGS_CSV, None, "",
                                f"{len(no_reading)} lesion(s) have no reading (e.g. patient {no_reading[0][0]}, "
                                f"lesion {no_reading[0][1]}); they are counted in the evaluation"))
    for p in sorted(known_patients - set(images["patient_id"])):
        warnings.append(Problem(schema.IMAGES_CSV, None, f"patient {p}", "patient has no image"))

    if errors:
        return report, None
    cohort = Cohort(
        root=root,
        meta=meta,
        patients=patients.drop(columns="csv_line"),
        images=images.drop(columns="csv_line"),
        lesions=_typed_lesions(lesions.drop(columns="csv_line")),
        outcomes=_typed_outcomes(outcomes.drop(columns="csv_line")),
        readings=_typed_readings(readings.drop(columns="csv_line")),
        exclusions=report.exclusions,
    )
    return report, cohort


def _typed_lesions(t: pd.DataFrame) -> pd.DataFrame:
    for c in ("x_mm", "y_mm", "z_mm", "diameter_mm"):
        t[c] = t[c].astype(float)
    return t


def _typed_outcomes(t: pd.DataFrame) -> pd.DataFrame:
    t["pcr"] = t["pcr"].astype(int)
    t["resected"] = t["resected"].astype(int)
    return t


def _typed_readings(t: pd.DataFrame) -> pd.DataFrame:
    t["score"] = t["score"].astype(float)
    t["call"] = t["call"].astype(int)
    return t


def load_cohort(root: str | Path, *, check_images: bool = True) -> Cohort:
    """Validate and load a cohort; raise :class:`CohortValidationError` listing every error."""
    report, cohort = validate_cohort(root, check_images=check_images)
    report.raise_if_errors()
    assert cohort is not None
    return cohort
