"""What ``dlm-import`` writes, and how a restart recognises what is already done.

Every file is written under a temporary name and renamed (:mod:`dlm_ml.utils.atomic`). A
``(patient_id, timepoint)`` is finished when its manifest ``images/<patient_id>/<timepoint>.done.json``
(written last) exists and lists existing files made with the same options; re-running skips
finished ones, and leftover temporary files of an interrupted run are removed. Nothing written
holds patient names, DICOM ids, UIDs or input paths: images are written without DICOM metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import SimpleITK as sitk
import yaml

from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging.imageio import write_image
from dlm_ml.utils.atomic import TEMP_NAME, atomic_write_csv, atomic_write_json, atomic_write_text

IMPORT_FORMAT_VERSION = 1
IMPORT_REPORT = "import_report.json"


def write_json(path: Path, data: dict) -> None:
    atomic_write_json(path, data, indent=2)


def write_table(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    """``rows`` as a CSV with exactly ``columns`` (a header-only file when there is no row)."""
    atomic_write_csv(path, pd.DataFrame(rows, columns=list(columns)))


def rounded(value: float | None, digits: int = 4) -> float | None:
    """Round for sidecars/tables (short, stable text; None and non-finite values become None)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def clean_image(image: sitk.Image, pixel: int | None = None) -> sitk.Image:
    """A copy with geometry only: no metadata dictionary can leak into the file."""
    arr = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return sitk.Cast(out, pixel) if pixel is not None else out


def manifest_path(out: Path, pid: str, tp: str) -> Path:
    return out / "images" / pid / f"{tp}.done.json"


def finished_manifest(out: Path, pid: str, tp: str, key: str) -> dict | None:
    """The manifest of a finished ``(pid, tp)`` made with options ``key`` whose files all exist, else None."""
    path = manifest_path(out, pid, tp)
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


def write_visit_image(out: Path, pid: str, tp: str, modality: str, image: sitk.Image, sidecar: dict) -> dict:
    """Write ``images/<pid>/<tp>_<modality>.nii.gz`` and its JSON sidecar; returns the manifest item."""
    rel = Path("images") / pid / f"{tp}_{modality}.nii.gz"
    rel_json = Path("images") / pid / f"{tp}_{modality}.json"
    write_image(image, out / rel)
    write_json(out / rel_json, sidecar)
    return {"modality": modality, "path": rel.as_posix(), "sidecar": rel_json.as_posix()}


def remove_leftovers(out: Path) -> int:
    """Delete the temporary files an interrupted run left in ``out``; returns how many."""
    n = 0
    for sub in ("images", "masks", "."):
        folder = out / sub
        if not folder.is_dir():
            continue
        for path in (folder.rglob(".*") if sub != "." else folder.glob(".*")):
            if path.is_file() and TEMP_NAME.match(path.name):
                path.unlink()
                n += 1
    return n


def write_cohort_tables(out: Path, manifests: dict[tuple[str, str], dict], sites: dict[str, str],
                        lesions: list[dict], outcomes: list[dict], readings: list[dict]) -> None:
    """``patients.csv`` (patients with at least one image), ``images.csv`` (with the sidecar
    column), ``lesions.csv``, ``outcomes.csv`` and ``readings.csv`` of the cohort (docs/design.md §3)."""
    tp_order = {t: i for i, t in enumerate(schema.TIMEPOINTS)}
    mod_order = {m: i for i, m in enumerate(schema.MODALITIES)}
    image_rows = [
        {"patient_id": pid, "timepoint": tp, "modality": item["modality"], "path": item["path"],
         "sidecar": item["sidecar"]}
        for (pid, tp), manifest in manifests.items()
        for item in manifest["images"]
    ]
    image_rows.sort(key=lambda r: (r["patient_id"], tp_order[r["timepoint"]], mod_order[r["modality"]]))
    with_images = {r["patient_id"] for r in image_rows}
    write_table(out / schema.PATIENTS_CSV,
                [{"patient_id": p, "site": site} for p, site in sites.items() if p in with_images],
                schema.REQUIRED_COLUMNS[schema.PATIENTS_CSV])
    write_table(out / schema.IMAGES_CSV, image_rows, (*schema.REQUIRED_COLUMNS[schema.IMAGES_CSV], "sidecar"))
    write_table(out / schema.LESIONS_CSV, lesions,
                (*schema.REQUIRED_COLUMNS[schema.LESIONS_CSV], *schema.OPTIONAL_LESION_COLUMNS))
    # Header-only tables when none were given: a lesion without outcome or reading is a
    # missing row, which validation counts and reports.
    write_table(out / schema.OUTCOMES_CSV, outcomes, schema.REQUIRED_COLUMNS[schema.OUTCOMES_CSV])
    write_table(out / schema.READINGS_CSV, readings, schema.REQUIRED_COLUMNS[schema.READINGS_CSV])


def write_cohort_yaml(out: Path, name: str, version: str, description: str) -> None:
    cohort = {
        "name": name,
        "version": str(version),
        "timepoints": list(schema.TIMEPOINTS),
        "modalities": list(schema.MODALITIES),
        "description": description,
    }
    atomic_write_text(out / schema.COHORT_YAML, yaml.safe_dump(cohort, sort_keys=False, allow_unicode=True))
