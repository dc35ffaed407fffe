"""One import: check the inputs, import every unfinished ``(patient_id, timepoint)``, then the
lesions and readings, and write the cohort tables only when the whole run had no problem.

Problems are collected over the whole run and returned together; studies finished before a
problem are kept and skipped when the import is run again.
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from dlm_ml import __version__
from dlm_ml.data.imaging import dicom
from dlm_ml.data.importing.lesions import lesion_tables, reading_table
from dlm_ml.data.importing.mapping import ImportProblem, StudyRow, parse_mapping
from dlm_ml.data.importing.output import (
    IMPORT_FORMAT_VERSION,
    IMPORT_REPORT,
    finished_manifest,
    remove_leftovers,
    write_cohort_tables,
    write_cohort_yaml,
    write_json,
)
from dlm_ml.data.importing.studies import check_identity, locate_studies
from dlm_ml.data.importing.unit import Options, import_unit

SKIPPED = "skipped (already imported)"
IMPORTED = "imported"


def _stderr(message: str) -> None:
    print(f"dlm-import: {message}", file=sys.stderr)


@dataclass
class ImportRequest:
    """What to import: the DICOM ``input_dir``, the mapping CSV, the cohort folder ``out``, the
    optional lesions and readings CSVs, and how (ADC options, lesion diameter method)."""

    input_dir: Path
    mapping: Path
    out: Path
    lesions: Path | None = None
    readings: Path | None = None
    name: str | None = None
    cohort_version: str = "1"
    description: str = ""
    site: str = "site1"
    options: Options = field(default_factory=Options)
    diameter_method: str = "equivalent_sphere"
    force: bool = False
    progress: bool = True


@dataclass
class ImportResult:
    """``problems`` (empty on success); ``started`` is False when the inputs were refused before
    anything was written; ``status`` maps each ``(patient_id, timepoint)`` done to
    ``imported`` or ``skipped (already imported)``."""

    problems: list[str]
    started: bool
    status: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_imported(self) -> int:
        return sum(1 for s in self.status.values() if s == IMPORTED)


def _check_inputs(request: ImportRequest, problems: list[str]) -> list[StudyRow]:
    input_dir, out = request.input_dir, request.out
    if not input_dir.is_dir():
        problems.append(f"input folder not found: {input_dir}")
    elif out.resolve().is_relative_to(input_dir.resolve()):
        problems.append(f"output folder {out} lies inside the input folder {input_dir}; choose another")
    rows = parse_mapping(request.mapping, input_dir, problems) if input_dir.is_dir() else []
    for what, path in (("lesions", request.lesions), ("readings", request.readings)):
        if path is not None and not path.is_file():
            problems.append(f"{what} CSV not found: {path}")
    return rows


def _import_units(request: ImportRequest, units: dict[tuple[str, str], list[StudyRow]], todo: list[tuple[str, str]],
                  manifests: dict, status: dict, problems: list[str], log: Callable[[str], None]) -> None:
    todo_rows = [r for key in todo for r in units[key]]
    with tempfile.TemporaryDirectory(prefix="dlm_import_") as tmp:
        locate_studies(todo_rows, request.input_dir, Path(tmp), request.progress, problems)
        for key in tqdm(todo, desc="importing", unit="study", disable=not request.progress):
            unit_rows = units[key]
            # Every row's identity is checked (a list, not a short-circuiting generator) so that
            # all problems are reported at once.
            if not all(r.headers for r in unit_rows) or not all([check_identity(r, problems) for r in unit_rows]):
                continue
            ids = {h.patient_id for r in unit_rows for h in r.headers if h.is_image}
            if len(ids) > 1:
                log(f"warning: {key[0]}/{key[1]} joins studies of {len(ids)} different DICOM patients")
            try:
                manifests[key] = import_unit(key[0], key[1], unit_rows, request.out, request.options, warn=log)
                status[key] = IMPORTED
            except (ImportProblem, dicom.DicomError, ValueError, RuntimeError) as err:
                problems.append(str(err) if isinstance(err, ImportProblem) else f"{key[0]}/{key[1]}: {err}")


def _sites(rows: list[StudyRow], patients: list[str], default: str, problems: list[str]) -> dict[str, str]:
    """One site per patient: a blank site inherits the patient's stated one; ``default`` fills
    patients without any; different stated sites are a problem."""
    sites: dict[str, set[str]] = {pid: set() for pid in patients}
    for r in rows:
        if r.site:
            sites[r.patient_id].add(r.site)
    for pid, s in sites.items():
        if not s:
            s.add(default)
        elif len(s) > 1:
            problems.append(f"patient {pid}: mapping rows give different sites ({', '.join(sorted(s))})")
    return {pid: next(iter(s)) for pid, s in sites.items()}


def import_cohort(request: ImportRequest, log: Callable[[str], None] = _stderr) -> ImportResult:
    """Build the cohort ``request.out`` from DICOM studies (see docs/importing.md); warnings go to ``log``."""
    problems: list[str] = []
    rows = _check_inputs(request, problems)
    if problems:
        return ImportResult(problems, started=False)

    out, opts = request.out, request.options
    out.mkdir(parents=True, exist_ok=True)
    leftovers = remove_leftovers(out)
    if leftovers:
        log(f"removed {leftovers} temporary file(s) of an interrupted run")
    units: dict[tuple[str, str], list[StudyRow]] = defaultdict(list)
    for r in rows:
        units[(r.patient_id, r.timepoint)].append(r)
    manifests: dict[tuple[str, str], dict] = {}
    todo = []
    for key, unit_rows in units.items():
        done = None if request.force else finished_manifest(out, key[0], key[1], opts.key(unit_rows))
        if done is None:
            todo.append(key)
        else:
            manifests[key] = done
    status = {key: SKIPPED for key in manifests}
    if todo:
        _import_units(request, units, todo, manifests, status, problems, log)

    patients = sorted({r.patient_id for r in rows})
    lesions, outcomes = lesion_tables(request.lesions, request.input_dir, out, manifests, set(patients),
                                      request.diameter_method, problems)
    readings = reading_table(request.readings, {(x["patient_id"], x["lesion_id"]) for x in lesions}, problems)
    sites = _sites(rows, patients, request.site, problems)
    if problems:
        return ImportResult(problems, started=True, status=status)

    write_cohort_tables(out, manifests, sites, lesions, outcomes, readings)
    write_cohort_yaml(out, request.name or out.resolve().name, request.cohort_version,
                      request.description or f"Imported from DICOM by dlm-import (dlm_ml {__version__}).")
    report = {
        "dlm_ml_version": __version__,
        "import_format": IMPORT_FORMAT_VERSION,
        "options": {"adc_source": opts.adc_source, "adc_min_b_s_mm2": opts.adc_min_b,
                    "adc_weighting": opts.adc_weighting, "adc_noise_floor": opts.adc_noise_floor,
                    "diameter_method": request.diameter_method, "ct_outside_fov_value_hu": dicom.CT_OUTSIDE_FOV_HU},
        "units": [{"patient_id": k[0], "timepoint": k[1], "status": status.get(k, "?"),
                   "modalities": [i["modality"] for i in manifests[k]["images"]]} for k in sorted(manifests)],
        "n_lesions": len(lesions),
        "n_outcomes": len(outcomes),
        "n_readings": len(readings),
    }
    write_json(out / IMPORT_REPORT, report)
    return ImportResult(problems, started=True, status=status)
