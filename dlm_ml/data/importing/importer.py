"""``dlm-import``: build a dlm_ml cohort (DESIGN.md §3) from a folder of DICOM studies.

Usage::

    dlm-import INPUT --mapping studies.csv --out COHORT [--lesions lesions.csv] [--readings readings.csv]
               [--name NAME] [--site SITE] [--adc-source scanner|computed] [--adc-min-b 0]
               [--adc-weighting signal|signal_squared|none] [--force] [--no-progress]

``INPUT`` is a folder of DICOM files in any nesting (PACS exports, zips of a
series included). Series are classified from DICOM tags only — Modality,
ImageType (``ADC``), SeriesDescription naming an ADC map, diffusion b-values —
never from folder names (:func:`dlm_ml.data.imaging.dicom.classify_series`).

Mapping CSV (``--mapping``), one row per DICOM study
------------------------------------------------------
=================== =========================================================
``patient_id``      pseudonymous id: letters, digits, ``_ - .``; must differ
                    from the DICOM PatientID and PatientName
``timepoint``       ``baseline``, ``presurgery`` or ``followup``
``study_uid``       the StudyInstanceUID, **or**
``study_path``      a folder relative to INPUT holding the study (exactly one
                    of the two per row)
``site``            optional; default ``--site``
``ct_series_number``  optional SeriesNumber to use when a study holds several
                    candidate CT series (otherwise chosen by rule, see below)
``adc_series_number`` optional SeriesNumber of the scanner ADC map to use
``adc_source``      optional per-row override of ``--adc-source``
=================== =========================================================

Several rows may share ``(patient_id, timepoint)``: the CT and the MRI of one
timepoint are usually separate studies. Each ``(patient_id, timepoint)`` gives
at most one ``ct`` and one ``adc`` image.

Lesions CSV (``--lesions``, optional), one row per lesion
---------------------------------------------------------
``patient_id, lesion_id`` and either ``mask_path`` (relative to INPUT: DICOM
SEG, NRRD or NIfTI) with optional ``mask_label`` (segment label such as
``Tumor_1``, segment number or label value), or ``x_mm, y_mm, z_mm,
diameter_mm`` (centre in LPS mm of the baseline CT). With a mask, the mask is
resampled (nearest neighbour) onto the patient's baseline CT, written to
``masks/<patient_id>/<lesion_id>.nii.gz`` (label 1), and centre and
equivalent-sphere diameter are derived from it (``--diameter-method
max_extent`` for the 3-D maximum extent); explicit coordinates, when also
given, take precedence. Optional ``pcr`` (0/1), ``reference``
(``pathology``/``follow_up``) and ``resected`` (0/1) give ``outcomes.csv``.

Readings CSV (``--readings``, optional): ``reader_id, patient_id, lesion_id,
score, call``; copied to ``readings.csv`` after checks.

What is written
---------------
``cohort.yaml``, ``patients.csv``, ``images.csv``, ``lesions.csv`` (and
``outcomes.csv`` / ``readings.csv`` when given), ``import_report.json``, and
``images/<patient_id>/<timepoint>_<modality>.nii.gz`` with a JSON sidecar of
acquisition facts (vendor, model, field strength, b-values and the tag each
came from, spacing, slice thickness, kernel, contrast phase where the tags
state it, ADC source). CT is in HU with padding set to -1024 HU
(:data:`dlm_ml.data.imaging.dicom.CT_OUTSIDE_FOV_HU`); ADC is float32 in µm²/s.

Choices made by rule, each recorded in the sidecar: several CT candidates are
ranked by stated portal-venous phase, ORIGINAL image type, non-sharp kernel,
then slice count; ADC comes from the scanner's map when there is one
(``--adc-source scanner``, default) or is fitted from the diffusion series
(:mod:`dlm_ml.data.imaging.adc`) when asked or when no map exists.

Pseudonymity: nothing the importer writes holds patient names, ids, birth
dates, accession numbers, UIDs or input paths; images are written without
DICOM metadata. Error messages on the console do name input files and
folders, so that the operator can fix them.

Restarts: every file is written under a temporary name and renamed; a
``(patient_id, timepoint)`` is finished when its manifest
``images/<patient_id>/<timepoint>.done.json`` (written last) exists and lists
existing files made with the same options. Re-running skips finished ones;
leftover temporary files of an interrupted run are removed. Problems are
collected over the whole run and reported together; tables are written only
when there is none.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from dlm_ml import __version__
from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging import adc as adc_fit
from dlm_ml.data.imaging import dicom
from dlm_ml.data.imaging.imageio import read_image, write_image
from dlm_ml.data.imaging.masks import DIAMETER_METHODS, MaskError, lesion_geometry, load_mask
from dlm_ml.utils.atomic import atomic_write_text

IMPORT_FORMAT_VERSION = 1
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TEMP_RE = re.compile(r"^\..+\.tmp\d+")
MAPPING_COLUMNS = ("patient_id", "timepoint", "study_uid", "study_path")
ADC_SOURCES = ("scanner", "computed")
PLAUSIBLE_ADC_UM2_S = (100.0, 4000.0)  # median over positive voxels of a body ADC map
_SHARP_KERNEL_RE = re.compile(r"LUNG|BONE|SHARP|DETAIL|EDGE|B[6-9]\d|B[5-9]0[fs]?|YC|YD|FC5|FC8", re.I)


class ImportProblem(Exception):
    """One problem of an import; collected and reported together."""


# --------------------------------------------------------------------------- small helpers


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    frame = pd.DataFrame(rows, columns=list(columns))
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _r(value: float | None, digits: int = 4) -> float | None:
    """Round for sidecars/tables (short, stable text; None stays None)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _clean_image(image: sitk.Image, pixel: int | None = None) -> sitk.Image:
    """A copy with geometry only: no metadata dictionary can leak into the file."""
    arr = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return sitk.Cast(out, pixel) if pixel is not None else out


def _read_table(path: Path, name: str, required: Sequence[str], problems: list[str]) -> list[dict] | None:
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
    rows = _read_table(path, "mapping", ("patient_id", "timepoint"), problems)
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
        if not ID_RE.match(pid):
            problems.append(f"{where}: patient_id {pid!r} must be 1-64 letters, digits, '_', '-', '.'")
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
                StudyRow(line, pid, tp, uid, rel, row.get("site", ""), numbers["ct_series_number"], numbers["adc_series_number"], source)
            )
    return out


# --------------------------------------------------------------------------- scanning


def _locate_studies(rows: list[StudyRow], input_dir: Path, zip_dir: Path, progress: bool, problems: list[str]) -> None:
    """Fill ``row.headers`` for each row (one header scan of what is needed)."""
    need_all = any(r.study_uid for r in rows)
    roots = [input_dir] if need_all else [input_dir / r.study_path for r in rows]
    headers: list[tuple[Path, dicom.DicomHeader]] = []
    for i, root in enumerate(roots):
        scan = dicom.scan_dicom(root, zip_workdir=zip_dir / f"scan{i}", progress=progress)
        problems.extend(scan.problems)
        headers.extend((scan.origins.get(h.path, h.path), h) for h in scan.headers)
    by_uid: dict[str, list[dicom.DicomHeader]] = defaultdict(list)
    for _, h in headers:
        by_uid[h.study_uid].append(h)
    for row in rows:
        if row.study_uid:
            row.headers = by_uid.get(row.study_uid, [])
            if not row.headers:
                problems.append(f"{row.label}: no DICOM file of study_uid {row.study_uid} under {input_dir}")
        else:
            folder = (input_dir / row.study_path).resolve()
            row.headers = [h for origin, h in headers if origin.resolve().is_relative_to(folder)]
            if not row.headers:
                problems.append(f"{row.label}: no DICOM file under {folder}")


def _check_identity(row: StudyRow, problems: list[str]) -> bool:
    """One DICOM patient per row, and a patient_id that is not the DICOM one.

    Only image objects count: a mask (SEG, RTSTRUCT) lying in a study folder is not imported from there.
    """
    images = [h for h in row.headers if h.is_image]
    ids = {h.patient_id for h in images}
    ok = True
    if len(ids) > 1:
        problems.append(f"{row.label}: the study holds files of {len(ids)} different DICOM patients; map each study on its own")
        ok = False
    identifying = {v.strip().lower() for h in row.headers for v in (h.patient_id, h.patient_name) if v.strip()}
    if not images:
        problems.append(f"{row.label}: the study holds no DICOM image (only {len(row.headers)} non-image objects)")
        ok = False
    if row.patient_id.lower() in identifying:
        problems.append(f"{row.label}: patient_id equals the DICOM PatientID/PatientName; use a pseudonymous id")
        ok = False
    return ok


# --------------------------------------------------------------------------- choosing series


@dataclass
class Candidate:
    volume: dicom.DicomVolume
    kind: str
    series_number: int | None
    row: StudyRow

    @property
    def header(self) -> dicom.DicomHeader:
        return self.volume.first

    def describe(self) -> str:
        h = self.header
        desc = f" '{h.series_description}'" if h.series_description else ""
        return f"series {h.series_number}{desc} ({self.volume.describe()})"


def _candidates(rows: list[StudyRow], problems: dict[str, list[str]], label: str) -> dict[str, list[Candidate]]:
    """Candidate volumes per series class; series that cannot be split go to ``problems[kind]``."""
    out: dict[str, list[Candidate]] = defaultdict(list)
    for row in rows:
        for headers in dicom.group_series(row.headers).values():
            kind = dicom.classify_series(headers)
            if kind in ("non_image", "localizer", "other", "dwi_computed"):
                continue
            try:
                volumes = dicom.split_series(headers)
                for v in volumes:
                    v.geometry  # noqa: B018 - validates the stack now (missing slices, tilt), not at read time
            except dicom.DicomError as err:
                problems[kind].append(f"{label}: {kind} series {headers[0].series_number}: {err}")
                continue
            for v in volumes:
                out[kind].append(Candidate(v, kind, headers[0].series_number, row))
    return out


def _pick_ct(cands: list[Candidate], label: str) -> tuple[Candidate, str]:
    forced = [c for c in cands if c.row.ct_series_number is not None]
    if forced:
        wanted = [c for c in forced if c.series_number == c.row.ct_series_number]
        if len(wanted) != 1:
            found = ", ".join(c.describe() for c in cands)
            raise ImportProblem(f"{label}: ct_series_number {forced[0].row.ct_series_number} matches {len(wanted)} CT volumes; found: {found}")
        return wanted[0], "ct_series_number given in the mapping"

    def rank(c: Candidate) -> tuple:
        h = c.header
        return (
            dicom.contrast_phase(h) == "portal_venous",
            "ORIGINAL" in h.image_type,
            not _SHARP_KERNEL_RE.search(h.kernel or ""),
            c.volume.n_slices,
        )

    ordered = sorted(cands, key=rank, reverse=True)
    if len(ordered) > 1 and rank(ordered[0]) == rank(ordered[1]):
        found = "; ".join(c.describe() for c in ordered)
        raise ImportProblem(f"{label}: several equally good CT series ({found}); set ct_series_number in the mapping")
    reason = "only CT series" if len(ordered) == 1 else (
        f"best of {len(ordered)} CT series by (stated portal-venous phase, ORIGINAL, non-sharp kernel, slice count)"
    )
    return ordered[0], reason


def _geometry_groups(cands: list[Candidate]) -> list[list[Candidate]]:
    groups: list[list[Candidate]] = []
    for c in cands:
        geo = c.volume.geometry  # validated by _candidates
        for g in groups:
            if g[0].volume.geometry.matches(geo):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


# --------------------------------------------------------------------------- sidecars


def _acquisition_facts(h: dicom.DicomHeader, geo: dicom.Geometry) -> dict:
    facts = {
        "source_format": "DICOM",
        "source_modality": h.modality,
        "vendor": h.manufacturer or None,
        "model": h.model or None,
        "software_versions": h.software or None,
        "field_strength_t": _r(h.field_strength_t),
        "image_type": list(h.image_type),
        "patient_position": h.patient_position or None,
        "size": list(geo.size),
        "spacing_mm": [_r(v, 5) for v in geo.spacing_mm],
        "origin_lps_mm": [_r(v, 4) for v in geo.origin_mm],
        "direction": [_r(v, 6) for v in geo.direction],
        "slice_thickness_mm": _r(h.slice_thickness_mm),
        "spacing_between_slices_mm": _r(geo.spacing_mm[2], 5),
    }
    if h.modality == "CT":
        facts.update(
            convolution_kernel=h.kernel or None,
            kvp=_r(h.kvp),
            contrast_agent_stated=bool(h.contrast_agent or h.contrast_route),
            contrast_phase=dicom.contrast_phase(h),
        )
    return facts


def _adc_scale(image: sitk.Image, label: str) -> tuple[float, str]:
    """Factor to µm²/s for a scanner ADC map, from the median of its positive voxels."""
    arr = sitk.GetArrayViewFromImage(image)
    positive = arr[arr > 0]
    if positive.size == 0:
        raise ImportProblem(f"{label}: scanner ADC map is empty")
    m = float(np.median(positive))
    if 200 <= m <= 5000:
        return 1.0, "1e-6 mm2/s (um2/s)"
    if 0.2 <= m <= 5:
        return 1e3, "1e-3 mm2/s"
    if 2e-4 <= m <= 5e-3:
        return 1e6, "mm2/s"
    raise ImportProblem(f"{label}: cannot tell the units of the scanner ADC map (median of positive voxels {m:g})")


# --------------------------------------------------------------------------- one (patient, timepoint)


@dataclass
class Options:
    adc_source: str = "scanner"
    adc_min_b: float = 0.0
    adc_weighting: str = adc_fit.DEFAULT_WEIGHTING
    adc_noise_floor: float | None = None

    def key(self, rows: list[StudyRow]) -> str:
        """Fingerprint of what determines a unit's output (no UIDs or paths)."""
        payload = {
            "format": IMPORT_FORMAT_VERSION,
            "adc": [self.adc_source, self.adc_min_b, self.adc_weighting, self.adc_noise_floor],
            "rows": sorted((r.ct_series_number or -1, r.adc_series_number or -1, r.adc_source) for r in rows),
            "n_rows": len(rows),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _manifest_path(out: Path, pid: str, tp: str) -> Path:
    return out / "images" / pid / f"{tp}.done.json"


def _finished(out: Path, pid: str, tp: str, key: str) -> dict | None:
    path = _manifest_path(out, pid, tp)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("options_key") != key:
        return None
    for item in manifest.get("images", []):
        if not (out / item["path"]).is_file() or not (out / item["sidecar"]).is_file():
            return None
    return manifest


def _write_output(out: Path, pid: str, tp: str, modality: str, image: sitk.Image, sidecar: dict) -> dict:
    rel = Path("images") / pid / f"{tp}_{modality}.nii.gz"
    rel_json = Path("images") / pid / f"{tp}_{modality}.json"
    write_image(image, out / rel)
    _write_json(out / rel_json, sidecar)
    return {"modality": modality, "path": rel.as_posix(), "sidecar": rel_json.as_posix()}


def import_unit(pid: str, tp: str, rows: list[StudyRow], out: Path, opts: Options) -> dict:
    """Import one ``(patient_id, timepoint)``; returns its manifest. Raises :class:`ImportProblem`."""
    label = f"{pid}/{tp}"
    manifest_path = _manifest_path(out, pid, tp)
    if manifest_path.exists():
        manifest_path.unlink()  # from here on the unit is unfinished until rewritten
    problems: dict[str, list[str]] = defaultdict(list)
    cands = _candidates(rows, problems, label)
    # A broken CT or ADC series is always a problem; a broken diffusion series only
    # when ADC has to be computed from it (checked below).
    if problems["ct"] or problems["adc"]:
        raise ImportProblem("\n".join(problems["ct"] + problems["adc"]))
    base = {"dlm_ml_version": __version__, "import_format": IMPORT_FORMAT_VERSION, "patient_id": pid, "timepoint": tp}
    written: list[dict] = []

    if cands.get("ct"):
        chosen, reason = _pick_ct(cands["ct"], label)
        info: dict = {}
        image = chosen.volume.read(info=info)
        side = dict(base, modality="ct", units="HU", **_acquisition_facts(chosen.header, chosen.volume.geometry))
        side.update(
            ct_outside_fov_value_hu=dicom.CT_OUTSIDE_FOV_HU,
            ct_outside_fov_voxels=int(info.get("ct_outside_fov_voxels", 0)),
            selection={"n_candidates": len(cands["ct"]), "reason": reason},
        )
        written.append(_write_output(out, pid, tp, "ct", _clean_image(image), side))

    scanner = cands.get("adc", [])
    dwi_groups = [g for g in _geometry_groups(cands.get("dwi", [])) if len({c.volume.b_value for c in g}) >= 2]
    requested = next((r.adc_source for r in rows if r.adc_source), "") or opts.adc_source
    forced_adc = [r.adc_series_number for r in rows if r.adc_series_number is not None]
    if forced_adc:
        scanner = [c for c in scanner if c.series_number in forced_adc]
        if len(scanner) != 1:
            raise ImportProblem(f"{label}: adc_series_number {forced_adc[0]} matches {len(scanner)} ADC series")
    # Prefer the diffusion acquisition on the scanner map's grid, then the one with most b-values.
    dwi = None
    if dwi_groups:
        def dwi_rank(g: list[Candidate]) -> tuple:
            on_map = any(s.volume.geometry.matches(g[0].volume.geometry) for s in scanner)
            return (on_map, len({c.volume.b_value for c in g}), sum(c.volume.n_slices for c in g))

        dwi_groups.sort(key=dwi_rank, reverse=True)
        dwi = dwi_groups[0]
    if len(scanner) > 1:
        on_grid = [s for s in scanner if dwi and s.volume.geometry.matches(dwi[0].volume.geometry)]
        if len(on_grid) == 1:
            scanner = on_grid
        else:
            found = "; ".join(c.describe() for c in scanner)
            raise ImportProblem(f"{label}: several scanner ADC maps ({found}); set adc_series_number in the mapping")

    if problems["dwi"] and (requested == "computed" or not scanner):
        raise ImportProblem("\n".join(problems["dwi"]))
    use = None
    note = None
    if requested == "computed" and dwi:
        use = "computed"
    elif scanner:
        use = "scanner"
        if requested == "computed":
            note = "computed ADC requested but no diffusion series with two or more b-values on one grid"
    elif dwi:
        use = "computed"
        if requested == "scanner":
            note = "scanner ADC requested but the study holds no ADC map; computed from the diffusion series"

    if use is not None:
        side = dict(base, modality="adc", units="um2/s (1e-6 mm2/s)", adc_source=use, adc_source_requested=requested)
        side["adc_alternative_available"] = bool(scanner) and bool(dwi)
        if note:
            side["adc_source_note"] = note
        dwi_info: dict = {}
        if dwi:
            bs = sorted({float(c.volume.b_value) for c in dwi})  # type: ignore[arg-type]
            sources: dict[str, list[str]] = defaultdict(list)
            directions: dict[str, int] = defaultdict(int)
            for c in dwi:
                key = f"{float(c.volume.b_value):g}"
                directions[key] += 1
                for s in c.volume.b_value_sources:
                    if s not in sources[key]:
                        sources[key].append(s)
            dwi_info = {
                "b_values_s_mm2": bs,
                "b_value_sources": dict(sources),
                "volumes_per_b_value": dict(directions),
                "dwi_split_by": sorted({c.volume.split_by for c in dwi}),
            }
        if use == "scanner":
            chosen = scanner[0]
            raw = chosen.volume.read()
            scale, units = _adc_scale(raw, label)
            image = sitk.Cast(raw, sitk.sitkFloat32) * scale
            side.update(_acquisition_facts(chosen.header, chosen.volume.geometry))
            side.update(adc_scanner_units_inferred=units, adc_scale_to_um2_s=scale)
            if dwi_info:
                side.update(dwi_info)
            elif chosen.header.b_value is not None:
                # Vendors put the highest b-value of the fit on the map itself.
                side.update(b_value_on_adc_map_s_mm2=_r(chosen.header.b_value), b_value_sources={
                    f"{chosen.header.b_value:g}": [chosen.header.b_value_source]})
        else:
            dwi_set = dicom.load_dwi([c.volume for c in dwi])  # type: ignore[union-attr]
            try:
                image, fit = adc_fit.fit_adc(
                    dwi_set.trace(), weighting=opts.adc_weighting, min_b_value=opts.adc_min_b, noise_floor=opts.adc_noise_floor
                )
            except ValueError as err:
                raise ImportProblem(f"{label}: ADC fit: {err}") from err
            side.update(_acquisition_facts(dwi[0].header, dwi[0].volume.geometry))  # type: ignore[index]
            side.update(dwi_info)
            side["adc_fit"] = fit.as_dict()
            if scanner and scanner[0].volume.geometry.matches(dwi[0].volume.geometry):  # type: ignore[index]
                scanner_image = scanner[0].volume.read()
                scale, _ = _adc_scale(scanner_image, label)
                ref = sitk.GetArrayFromImage(scanner_image).astype(np.float64)
                calc = sitk.GetArrayFromImage(image)
                mask = (calc > 0) & (ref > 0)
                if mask.sum() >= 3:
                    agreement = adc_fit.compare_adc(calc, ref * scale, mask)
                    side["adc_agreement_with_scanner_map"] = {k: _r(v) for k, v in agreement.items()}
        values = sitk.GetArrayViewFromImage(image)
        median = float(np.median(values[values > 0])) if (values > 0).any() else 0.0
        side["adc_median_positive_um2_s"] = _r(median, 1)
        if not PLAUSIBLE_ADC_UM2_S[0] <= median <= PLAUSIBLE_ADC_UM2_S[1]:
            # Not fatal (a phantom or an odd protocol may do this) but worth a look.
            side["adc_warning"] = "median ADC outside the plausible tissue range"
            print(f"dlm-import: warning: {label}: median ADC {median:.4g} um2/s is outside "
                  f"{PLAUSIBLE_ADC_UM2_S[0]:g}-{PLAUSIBLE_ADC_UM2_S[1]:g}", file=sys.stderr)
        written.append(_write_output(out, pid, tp, "adc", _clean_image(image, sitk.sitkFloat32), side))

    if not written:
        kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(cands.items())) or "no usable image series"
        raise ImportProblem(f"{label}: no CT or ADC could be made (found: {kinds})")
    manifest = {"patient_id": pid, "timepoint": tp, "options_key": opts.key(rows), "images": written}
    _write_json(manifest_path, manifest)
    return manifest


# --------------------------------------------------------------------------- lesions, outcomes, readings


def _lesions(
    path: Path | None, input_dir: Path, out: Path, manifests: dict, patients: set[str], method: str, problems: list[str]
) -> tuple[list[dict], list[dict]]:
    if path is None:
        return [], []
    rows = _read_table(path, "lesions", ("patient_id", "lesion_id"), problems)
    if rows is None:
        return [], []
    lesions, outcomes = [], []
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(rows):
        where = f"{path}: line {i + 2}"
        pid, lid = row.get("patient_id", ""), row.get("lesion_id", "")
        if pid not in patients:
            problems.append(f"{where}: patient_id {pid!r} is not in the mapping")
            continue
        if not ID_RE.match(lid):
            problems.append(f"{where}: lesion_id {lid!r} must be 1-64 letters, digits, '_', '-', '.'")
            continue
        if (pid, lid) in seen:
            problems.append(f"{where}: lesion {pid}/{lid} repeats")
            continue
        seen.add((pid, lid))
        record = {"patient_id": pid, "lesion_id": lid, "mask_path": "", "mask_label": ""}
        coords = [row.get(c, "") for c in ("x_mm", "y_mm", "z_mm", "diameter_mm")]
        if any(coords):
            try:
                values = [float(v) for v in coords]
                if not all(math.isfinite(v) for v in values) or values[3] <= 0:
                    raise ValueError
            except ValueError:
                problems.append(f"{where}: x_mm, y_mm, z_mm, diameter_mm must all be numbers (diameter > 0)")
                continue
            record.update(zip(("x_mm", "y_mm", "z_mm", "diameter_mm"), values))
        mask_rel = row.get("mask_path", "")
        if mask_rel:
            mask_file = (input_dir / mask_rel).resolve()
            ct = next((m for m in manifests.get((pid, "baseline"), {}).get("images", []) if m["modality"] == "ct"), None)
            if not mask_file.is_relative_to(input_dir.resolve()) or not mask_file.exists():
                problems.append(f"{where}: mask_path not found inside {input_dir}: {mask_rel}")
                continue
            if ct is None:
                problems.append(f"{where}: a lesion mask needs the patient's baseline CT, which was not imported")
                continue
            label = row.get("mask_label", "") or None
            try:
                reference = read_image(out / ct["path"])
                mask = load_mask(mask_file, label, reference)
            except (MaskError, ValueError) as err:
                problems.append(f"{where}: {err}")
                continue
            rel = Path("masks") / pid / f"{lid}.nii.gz"
            write_image(_clean_image(mask, sitk.sitkUInt8), out / rel)
            record.update(mask_path=rel.as_posix(), mask_label=1)
            if not any(coords):
                geo = lesion_geometry(mask, 1, method)
                record.update(zip(("x_mm", "y_mm", "z_mm"), (_r(v, 3) for v in geo.centre_mm)), diameter_mm=_r(geo.diameter_mm, 3))
        if "x_mm" not in record:
            problems.append(f"{where}: give x_mm, y_mm, z_mm, diameter_mm or a mask_path")
            continue
        lesions.append(record)
        outcome = [row.get(c, "") for c in ("pcr", "reference", "resected")]
        if any(outcome):
            pcr, ref, resected = outcome
            if pcr not in ("0", "1") or ref not in schema.REFERENCES or resected not in ("0", "1"):
                problems.append(
                    f"{where}: outcome needs pcr 0/1, reference one of {', '.join(schema.REFERENCES)}, resected 0/1"
                )
                continue
            outcomes.append({"patient_id": pid, "lesion_id": lid, "pcr": int(pcr), "reference": ref, "resected": int(resected)})
    return lesions, outcomes


def _readings(path: Path | None, lesion_keys: set[tuple[str, str]], problems: list[str]) -> list[dict]:
    if path is None:
        return []
    rows = _read_table(path, "readings", schema.REQUIRED_COLUMNS[schema.READINGS_CSV], problems)
    if rows is None:
        return []
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: line {i + 2}"
        key = (row["patient_id"], row["lesion_id"])
        if key not in lesion_keys:
            problems.append(f"{where}: lesion {key[0]}/{key[1]} is not in the lesions CSV")
            continue
        try:
            score = float(row["score"])
        except ValueError:
            problems.append(f"{where}: score {row['score']!r} is not a number")
            continue
        if row["call"] not in ("0", "1") or not ID_RE.match(row["reader_id"]):
            problems.append(f"{where}: call must be 0/1 and reader_id a plain id")
            continue
        out.append({"reader_id": row["reader_id"], "patient_id": key[0], "lesion_id": key[1],
                    "score": int(score) if score.is_integer() else score, "call": int(row["call"])})
    return out


# --------------------------------------------------------------------------- main


def _remove_leftovers(out: Path) -> int:
    n = 0
    for sub in ("images", "masks", "."):
        folder = out / sub
        if not folder.is_dir():
            continue
        for path in (folder.rglob(".*") if sub != "." else folder.glob(".*")):
            if path.is_file() and TEMP_RE.match(path.name):
                path.unlink()
                n += 1
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlm-import",
        description="Build a dlm_ml cohort from a folder of DICOM studies and a mapping CSV (see docs/importing.md).",
    )
    p.add_argument("input", type=Path, help="folder of DICOM studies (any nesting)")
    p.add_argument("--mapping", type=Path, required=True, help="CSV: patient_id, timepoint, study_uid | study_path, ...")
    p.add_argument("--out", type=Path, required=True, help="cohort folder to write (created)")
    p.add_argument("--lesions", type=Path, help="optional lesions CSV (coordinates or masks, outcomes)")
    p.add_argument("--readings", type=Path, help="optional readings CSV")
    p.add_argument("--name", help="cohort name (default: the output folder's name)")
    p.add_argument("--cohort-version", default="1", help="cohort version written to cohort.yaml")
    p.add_argument("--description", default="", help="free description for cohort.yaml")
    p.add_argument("--site", default="site1", help="site label for patients without a site in the mapping")
    p.add_argument("--adc-source", choices=ADC_SOURCES, default="scanner",
                   help="when both a scanner ADC map and multi-b DWI exist, which to use (default scanner)")
    p.add_argument("--adc-min-b", type=float, default=0.0,
                   help="leave b-values below this out of computed ADC (s/mm2; 100-200 removes perfusion)")
    p.add_argument("--adc-weighting", choices=adc_fit.WEIGHTINGS, default=adc_fit.DEFAULT_WEIGHTING)
    p.add_argument("--adc-noise-floor", type=float, default=None, help="signal noise floor (default: estimated)")
    p.add_argument("--diameter-method", choices=DIAMETER_METHODS, default="equivalent_sphere")
    p.add_argument("--force", action="store_true", help="re-import finished studies too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _report(problems: list[str]) -> None:
    print(f"dlm-import: {len(problems)} problem(s):", file=sys.stderr)
    for p in problems:
        print("  - " + p.replace("\n", "\n    "), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlm-import``; returns the exit status (0 ok, 1 problems)."""
    args = build_parser().parse_args(argv)
    input_dir: Path = args.input
    out: Path = args.out
    problems: list[str] = []
    if not input_dir.is_dir():
        problems.append(f"input folder not found: {input_dir}")
    elif out.resolve().is_relative_to(input_dir.resolve()):
        problems.append(f"output folder {out} lies inside the input folder {input_dir}; choose another")
    rows = parse_mapping(args.mapping, input_dir, problems) if input_dir.is_dir() else []
    for opt in ("lesions", "readings"):
        path = getattr(args, opt)
        if path is not None and not path.is_file():
            problems.append(f"{opt} CSV not found: {path}")
    if problems:
        _report(problems)
        return 1

    out.mkdir(parents=True, exist_ok=True)
    leftovers = _remove_leftovers(out)
    if leftovers:
        print(f"dlm-import: removed {leftovers} temporary file(s) of an interrupted run", file=sys.stderr)
    opts = Options(args.adc_source, args.adc_min_b, args.adc_weighting, args.adc_noise_floor)
    units: dict[tuple[str, str], list[StudyRow]] = defaultdict(list)
    for r in rows:
        units[(r.patient_id, r.timepoint)].append(r)
    manifests: dict[tuple[str, str], dict] = {}
    todo = []
    for key, unit_rows in units.items():
        done = None if args.force else _finished(out, key[0], key[1], opts.key(unit_rows))
        if done is None:
            todo.append(key)
        else:
            manifests[key] = done
    status = {key: "skipped (already imported)" for key in manifests}

    if todo:
        todo_rows = [r for key in todo for r in units[key]]
        with tempfile.TemporaryDirectory(prefix="dlm_import_") as tmp:
            _locate_studies(todo_rows, input_dir, Path(tmp), not args.no_progress, problems)
            from tqdm.auto import tqdm

            for key in tqdm(todo, desc="importing", unit="study", disable=args.no_progress):
                unit_rows = units[key]
                if not all(r.headers for r in unit_rows) or not all([_check_identity(r, problems) for r in unit_rows]):
                    continue
                ids = {h.patient_id for r in unit_rows for h in r.headers if h.is_image}
                if len(ids) > 1:
                    print(f"dlm-import: warning: {key[0]}/{key[1]} joins studies of {len(ids)} different DICOM patients",
                          file=sys.stderr)
                try:
                    manifests[key] = import_unit(key[0], key[1], unit_rows, out, opts)
                    status[key] = "imported"
                except (ImportProblem, dicom.DicomError, ValueError, RuntimeError) as err:
                    problems.append(str(err) if isinstance(err, ImportProblem) else f"{key[0]}/{key[1]}: {err}")

    patients = sorted({r.patient_id for r in rows})
    lesions, outcomes = _lesions(args.lesions, input_dir, out, manifests, set(patients), args.diameter_method, problems)
    readings = _readings(args.readings, {(x["patient_id"], x["lesion_id"]) for x in lesions}, problems)
    # A blank site inherits the patient's stated one; --site fills patients without any.
    sites: dict[str, set[str]] = {pid: set() for pid in patients}
    for r in rows:
        if r.site:
            sites[r.patient_id].add(r.site)
    for pid, s in sites.items():
        if not s:
            s.add(args.site)
        elif len(s) > 1:
            problems.append(f"patient {pid}: mapping rows give different sites ({', '.join(sorted(s))})")
    if problems:
        _report(problems)
        print(f"dlm-import: finished studies are kept in {out} and skipped on re-run; "
              "tables are written once every study imports", file=sys.stderr)
        return 1

    tp_order = {t: i for i, t in enumerate(schema.TIMEPOINTS)}
    mod_order = {m: i for i, m in enumerate(schema.MODALITIES)}
    image_rows = [
        {"patient_id": pid, "timepoint": tp, "modality": item["modality"], "path": item["path"], "sidecar": item["sidecar"]}
        for (pid, tp), manifest in manifests.items()
        for item in manifest["images"]
    ]
    image_rows.sort(key=lambda r: (r["patient_id"], tp_order[r["timepoint"]], mod_order[r["modality"]]))
    with_images = {r["patient_id"] for r in image_rows}
    _write_csv(out / schema.PATIENTS_CSV,
               [{"patient_id": p, "site": next(iter(sites[p]))} for p in patients if p in with_images],
               schema.REQUIRED_COLUMNS[schema.PATIENTS_CSV])
    _write_csv(out / schema.IMAGES_CSV, image_rows, (*schema.REQUIRED_COLUMNS[schema.IMAGES_CSV], "sidecar"))
    _write_csv(out / schema.LESIONS_CSV, lesions,
               (*schema.REQUIRED_COLUMNS[schema.LESIONS_CSV], *schema.OPTIONAL_LESION_COLUMNS))
    # Header-only tables when none were given: a lesion without outcome or reading is a
    # missing row, which validation counts and reports.
    _write_csv(out / schema.OUTCOMES_CSV, outcomes, schema.REQUIRED_COLUMNS[schema.OUTCOMES_CSV])
    _write_csv(out / schema.READINGS_CSV, readings, schema.REQUIRED_COLUMNS[schema.READINGS_CSV])
    cohort = {
        "name": args.name or out.resolve().name,
        "version": str(args.cohort_version),
        "timepoints": list(schema.TIMEPOINTS),
        "modalities": list(schema.MODALITIES),
        "description": args.description or f"Imported from DICOM by dlm-import (dlm_ml {__version__}).",
    }
    atomic_write_text(out / schema.COHORT_YAML, yaml.safe_dump(cohort, sort_keys=False, allow_unicode=True))
    report = {
        "dlm_ml_version": __version__,
        "import_format": IMPORT_FORMAT_VERSION,
        "options": {"adc_source": opts.adc_source, "adc_min_b_s_mm2": opts.adc_min_b, "adc_weighting": opts.adc_weighting,
                    "adc_noise_floor": opts.adc_noise_floor, "diameter_method": args.diameter_method,
                    "ct_outside_fov_value_hu": dicom.CT_OUTSIDE_FOV_HU},
        "units": [{"patient_id": k[0], "timepoint": k[1], "status": status.get(k, "?"),
                   "modalities": [i["modality"] for i in manifests[k]["images"]]} for k in sorted(manifests)],
        "n_lesions": len(lesions),
        "n_outcomes": len(outcomes),
        "n_readings": len(readings),
    }
    _write_json(out / "import_report.json", report)
    n_new = sum(1 for s in status.values() if s == "imported")
    print(f"dlm-import: {n_new} imported, {len(status) - n_new} already done; cohort written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
