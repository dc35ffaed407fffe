"""Reading a cohort folder (docs/design.md §3) into a :class:`Cohort`.

Tables are read with every value as a string (ids stay strings: "007" and "7" are different
pseudonyms) and a ``csv_line`` column (header = line 1) for problem reports; numbers are typed
only once validation has passed (:func:`dlm_ml.data.cohort.validate.validate_cohort`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dlm_ml.data.cohort import schema
from dlm_ml.data.cohort.problems import Problem


@dataclass
class Cohort:
    """A validated cohort: its metadata and tables, paths resolved against ``root``.

    ``lesions`` holds every lesion of ``lesions.csv``; ``labelled_lesions()`` those with
    an outcome, i.e. all lesions minus ``exclusions``. A cohort loaded for prediction only
    (``require_outcomes=False``) may have empty ``outcomes`` and ``readings`` (no row, the
    required columns) and no exclusions: every lesion is predicted.
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


def read_table(root: Path, name: str, errors: list[Problem]) -> pd.DataFrame | None:
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


def empty_table(name: str) -> pd.DataFrame:
    """A table with no row and exactly the required columns of ``name`` (strings, as
    :func:`read_table` reads them, plus ``csv_line``): what an absent optional table reads as."""
    table = pd.DataFrame({c: pd.Series(dtype=object) for c in schema.REQUIRED_COLUMNS[name]})
    table["csv_line"] = pd.Series(dtype=np.int64)
    return table


def load_meta(root: Path, errors: list[Problem]) -> dict:
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
    unsafe = [m for m in meta["modalities"] if not schema.is_safe_id(m)]
    if unsafe:  # modality names become file names (exported patches, QA pictures, saliency channels)
        errors.append(Problem(schema.COHORT_YAML, None, "",
                              f"modality name(s) {unsafe} are not plain names ({schema.SAFE_ID_RULE})"))
    return meta


def _typed_lesions(t: pd.DataFrame) -> pd.DataFrame:
    for c in ("x_mm", "y_mm", "z_mm", "diameter_mm"):
        t[c] = t[c].astype(float)
    if schema.DIAMETER_PRESURGERY in t.columns:  # empty = not recorded (NaN)
        t[schema.DIAMETER_PRESURGERY] = t[schema.DIAMETER_PRESURGERY].astype(float)
    return t


def _typed_outcomes(t: pd.DataFrame) -> pd.DataFrame:
    t["pcr"] = t["pcr"].astype(int)
    t["resected"] = t["resected"].astype(int)
    return t


def _typed_readings(t: pd.DataFrame) -> pd.DataFrame:
    t["score"] = t["score"].astype(float)
    t["call"] = t["call"].astype(int)
    return t



def cohort_from_tables(root: Path, meta: dict, tables: dict[str, pd.DataFrame], exclusions: pd.DataFrame) -> Cohort:
    """The :class:`Cohort` of validated string tables (``read_table``): line numbers dropped,
    coordinates (mm) and scores as floats, binary columns as ints."""
    def plain(name: str) -> pd.DataFrame:
        return tables[name].drop(columns="csv_line")

    return Cohort(
        root=root,
        meta=meta,
        patients=plain(schema.PATIENTS_CSV),
        images=plain(schema.IMAGES_CSV),
        lesions=_typed_lesions(plain(schema.LESIONS_CSV)),
        outcomes=_typed_outcomes(plain(schema.OUTCOMES_CSV)),
        readings=_typed_readings(plain(schema.READINGS_CSV)),
        exclusions=exclusions,
    )
