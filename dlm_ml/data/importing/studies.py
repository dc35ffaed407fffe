"""Finding each mapped study's DICOM files and the candidate CT, ADC and DWI volumes in them.

Series are classified from DICOM tags only (:func:`dlm_ml.data.imaging.dicom.classify_series`),
never from folder names. Several CT candidates are ranked by stated portal-venous phase,
ORIGINAL image type, non-sharp kernel, then slice count; a tie is a problem to resolve in the
mapping (``ct_series_number``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dlm_ml.data.imaging import dicom
from dlm_ml.data.importing.mapping import ImportProblem, StudyRow

_SHARP_KERNEL_RE = re.compile(r"LUNG|BONE|SHARP|DETAIL|EDGE|B[6-9]\d|B[5-9]0[fs]?|YC|YD|FC5|FC8", re.I)


def locate_studies(rows: list[StudyRow], input_dir: Path, zip_dir: Path, progress: bool,
                   problems: list[str]) -> None:
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


def check_identity(row: StudyRow, problems: list[str]) -> bool:
    """One DICOM patient per row, and a patient_id that is not the DICOM one.

    Only image objects count: a mask (SEG, RTSTRUCT) lying in a study folder is not imported from there.
    """
    images = [h for h in row.headers if h.is_image]
    ids = {h.patient_id for h in images}
    ok = True
    if len(ids) > 1:
        problems.append(f"{row.label}: the study holds files of {len(ids)} different DICOM patients; "
                        "map each study on its own")
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
    """One volume of a study that could become the ``kind`` (ct, adc, dwi) image of its visit."""

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


def candidates(rows: list[StudyRow], problems: dict[str, list[str]], label: str) -> dict[str, list[Candidate]]:
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


def pick_ct(cands: list[Candidate], label: str) -> tuple[Candidate, str]:
    forced = [c for c in cands if c.row.ct_series_number is not None]
    if forced:
        wanted = [c for c in forced if c.series_number == c.row.ct_series_number]
        if len(wanted) != 1:
            found = ", ".join(c.describe() for c in cands)
            raise ImportProblem(f"{label}: ct_series_number {forced[0].row.ct_series_number} matches "
                                f"{len(wanted)} CT volumes; found: {found}")
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


def geometry_groups(cands: list[Candidate]) -> list[list[Candidate]]:
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
