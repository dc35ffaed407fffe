"""The optional lesions and readings CSVs of ``dlm-import``, checked row by row.

Lesions: ``patient_id, lesion_id`` and either ``mask_path`` (relative to the input folder:
DICOM SEG, NRRD or NIfTI) with optional ``mask_label``, or ``x_mm, y_mm, z_mm, diameter_mm``
(centre in LPS mm of the baseline CT). A mask is resampled (nearest neighbour) onto the
patient's baseline CT, written to ``masks/<patient_id>/<lesion_id>.nii.gz`` (label 1), and
centre and diameter are derived from it unless coordinates are given too. Optional ``pcr``,
``reference`` and ``resected`` give ``outcomes.csv``. Readings: ``reader_id, patient_id,
lesion_id, score, call``, copied after checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import SimpleITK as sitk

from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging.imageio import read_image, write_image
from dlm_ml.data.imaging.masks import MaskError, lesion_geometry, load_mask
from dlm_ml.data.importing.mapping import read_rows
from dlm_ml.data.importing.output import clean_image, rounded


def lesion_tables(
    path: Path | None, input_dir: Path, out: Path, manifests: dict, patients: set[str], method: str, problems: list[str]
) -> tuple[list[dict], list[dict]]:
    """Rows of ``lesions.csv`` and ``outcomes.csv`` from the lesions CSV at ``path`` (none when
    ``path`` is None); masks are written under ``out/masks``. ``manifests`` are the imported
    visits (for the baseline CT a mask is resampled onto), ``method`` the diameter method."""
    if path is None:
        return [], []
    rows = read_rows(path, "lesions", ("patient_id", "lesion_id"), problems)
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
        if not schema.is_safe_id(lid):
            problems.append(f"{where}: lesion_id {lid!r}: {schema.SAFE_ID_RULE}")
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
            baseline_images = manifests.get((pid, "baseline"), {}).get("images", [])
            ct = next((m for m in baseline_images if m["modality"] == "ct"), None)
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
            write_image(clean_image(mask, sitk.sitkUInt8), out / rel)
            record.update(mask_path=rel.as_posix(), mask_label=1)
            if not any(coords):
                geo = lesion_geometry(mask, 1, method)
                record.update(zip(("x_mm", "y_mm", "z_mm"), (rounded(v, 3) for v in geo.centre_mm)),
                              diameter_mm=rounded(geo.diameter_mm, 3))
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
            outcomes.append({"patient_id": pid, "lesion_id": lid, "pcr": int(pcr), "reference": ref,
                             "resected": int(resected)})
    return lesions, outcomes


def reading_table(path: Path | None, lesion_keys: set[tuple[str, str]], problems: list[str]) -> list[dict]:
    """Rows of ``readings.csv`` from the readings CSV at ``path``, each lesion one of ``lesion_keys``."""
    if path is None:
        return []
    rows = read_rows(path, "readings", schema.REQUIRED_COLUMNS[schema.READINGS_CSV], problems)
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
        if row["call"] not in ("0", "1") or not schema.is_safe_id(row["reader_id"]):
            problems.append(f"{where}: call must be 0/1 and reader_id a plain id")
            continue
        out.append({"reader_id": row["reader_id"], "patient_id": key[0], "lesion_id": key[1],
                    "score": int(score) if score.is_integer() else score, "call": int(row["call"])})
    return out
