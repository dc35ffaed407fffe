"""The mapping CSV of ``dlm-import``: one row per DICOM study, checked before any DICOM is read.

Columns (see docs/importing.md): ``patient_id`` (pseudonymous: letters, digits, ``_ - .``),
``timepoint``, exactly one of ``study_uid`` (StudyInstanceUID) or ``study_path`` (a folder
inside the input), optional ``site``, ``ct_series_number``, ``adc_series_number`` and
``adc_source``. Several rows may share ``(patient_id, timepoint)``: the CT and the MRI of one
visit are usually separate studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging import dicom

MAPPING_COLUMNS = ("patient_id", "timepoint", "study_uid", "study_path")
ADC_SOURCES = ("scanner", "computed")


class ImportProblem(Exception):
    """One problem of an import; collected and reported together."""



def read_rows(path: Path, name: str, required: Sequence[str], problems: list[str]) -> list[dict] | None:
    """Rows of an input CSV as stripped strings (``None``, with a problem appended, when the file
    is missing, unparsable or lacks a ``required`` column)."""
    if not path.is_file():
        problems.append(f"{name} CSV not found: {path}")
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as err:  # noqa: BLE001 - any parse error is reported as a problem
        problems.append(f"{path}: cannot read {name} CSV ({err})")
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.append(f"{path}: {name} CSV lacks column(s) {', '.join(missing)}")
        return None
    return [{k: str(v).strip() for k, v in row.items()} for row in frame.to_dict("records")]


# --------------------------------------------------------------------------- mapping


@dataclass
class StudyRow:
    """One row of the mapping CSV (``line`` is its line number in the file)."""

    line: int
    patient_id: str
    timepoint: str
    study_uid: str = ""
    study_path: str = ""
    site: str = ""
    ct_series_number: int | None = None
    adc_series_number: int | None = None
    adc_source: str = ""
    headers: list[dicom.DicomHeader] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"mapping line {self.line} ({self.patient_id}/{self.timepoint})"


def parse_mapping(path: Path, input_dir: Path, problems: list[str]) -> list[StudyRow]:
    """Read and check the mapping CSV; problems are appended, valid rows returned."""
    rows = read_rows(path, "mapping", ("patient_id", "timepoint"), problems)
    if rows is None:
        return []
    out: list[StudyRow] = []
    seen_uid: dict[str, int] = {}
    seen_path: dict[str, int] = {}
    for i, row in enumerate(rows):
        line = i + 2  # header is line 1
        where = f"{path}: line {line}"
        pid, tp = row.get("patient_id", ""), row.get("timepoint", "")
        uid, rel = row.get("study_uid", ""), row.get("study_path", "")
        ok = True
        if not schema.is_safe_id(pid):
            problems.append(f"{where}: patient_id {pid!r}: {schema.SAFE_ID_RULE}")
            ok = False
        if tp not in schema.TIMEPOINTS:
            problems.append(f"{where}: timepoint {tp!r} is not one of {', '.join(schema.TIMEPOINTS)}")
            ok = False
        if bool(uid) == bool(rel):
            problems.append(f"{where}: give exactly one of study_uid or study_path")
            ok = False
        if rel:
            target = (input_dir / rel).resolve()
            if Path(rel).is_absolute() or not target.is_relative_to(input_dir.resolve()):
                problems.append(f"{where}: study_path {rel!r} must be a folder inside {input_dir}")
                ok = False
            elif not target.is_dir():
                problems.append(f"{where}: study_path folder not found: {target}")
                ok = False
            elif str(target) in seen_path:
                problems.append(f"{where}: study_path repeats line {seen_path[str(target)]}")
                ok = False
            else:
                seen_path[str(target)] = line
        if uid:
            if uid in seen_uid:
                problems.append(f"{where}: study_uid repeats line {seen_uid[uid]}")
                ok = False
            seen_uid[uid] = line
        numbers: dict[str, int | None] = {}
        for col in ("ct_series_number", "adc_series_number"):
            text = row.get(col, "")
            numbers[col] = None
            if text:
                try:
                    numbers[col] = int(float(text))
                except ValueError:
                    problems.append(f"{where}: {col} {text!r} is not a number")
                    ok = False
        source = row.get("adc_source", "")
        if source and source not in ADC_SOURCES:
            problems.append(f"{where}: adc_source {source!r} is not one of {', '.join(ADC_SOURCES)}")
            ok = False
        if ok:
            out.append(
                StudyRow(line, pid, tp, uid, rel, row.get("site", ""), numbers["ct_series_number"],
                         numbers["adc_series_number"], source)
            )
    return out
