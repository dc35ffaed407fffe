"""Tiny cohorts for the radiomics tests: uniform lesions of known intensity in textured tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import write_volume

#: Lesion intensity per (timepoint, modality): the ADC rises by 25 % under treatment.
LESION_VALUE = {("baseline", "ct"): 60.0, ("presurgery", "ct"): 40.0,
                ("baseline", "adc"): 1000.0, ("presurgery", "adc"): 1250.0}
TISSUE = {"ct": (100.0, 15.0), "adc": (1500.0, 150.0)}   # mean, SD of the textured background
SIZE = 40                                                   # voxels per edge, 1 mm, origin 0
LESION_RADIUS_MM = 6.0                                      # drawn; the ROI (diameter 8 mm) lies inside


def lesion_volume(centre_mm, modality: str, value: float, rng, radius_mm: float = LESION_RADIUS_MM) -> np.ndarray:
    """[z, y, x] float32 volume on the 1 mm grid at origin 0: noise around the tissue mean, a
    uniform ball of ``value`` at ``centre_mm`` (x, y, z)."""
    mean, sd = TISSUE[modality]
    volume = rng.normal(mean, sd, (SIZE, SIZE, SIZE)).astype(np.float32)
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
    ball = (x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2 <= radius_mm ** 2
    volume[ball] = value
    return volume


def write_cohort(root: Path, lesions: list[dict], *, skip_images=(), seed: int = 0) -> Path:
    """A valid cohort: one lesion per entry of ``lesions`` (patient_id, lesion_id, x_mm, y_mm,
    z_mm, diameter_mm, optional mask_path/mask_label), all four images per patient except
    ``skip_images`` ((patient_id, timepoint, modality))."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cohort.yaml").write_text(yaml.safe_dump({
        "name": "radiomics", "version": "1", "timepoints": ["baseline", "presurgery", "followup"],
        "modalities": ["ct", "adc"], "description": "uniform lesions"}))
    images, patients = [], sorted({lesion["patient_id"] for lesion in lesions})
    for pid in patients:
        centres = [(r["x_mm"], r["y_mm"], r["z_mm"]) for r in lesions if r["patient_id"] == pid]
        for (t, m), value in LESION_VALUE.items():
            if (pid, t, m) in skip_images:
                continue
            volume = lesion_volume(centres[0], m, value, rng)
            for centre in centres[1:]:
                z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
                volume[(x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= 36] = value
            rel = f"images/{pid}/{t}_{m}.nii.gz"
            write_volume(root / rel, volume)
            images.append({"patient_id": pid, "timepoint": t, "modality": m, "path": rel})
    pd.DataFrame([{"patient_id": p, "site": "A"} for p in patients]).to_csv(root / "patients.csv", index=False)
    pd.DataFrame(images).to_csv(root / "images.csv", index=False)
    pd.DataFrame(lesions).to_csv(root / "lesions.csv", index=False)
    keys = [{"patient_id": r["patient_id"], "lesion_id": r["lesion_id"]} for r in lesions]
    pd.DataFrame([{**k, "pcr": i % 2, "reference": "pathology", "resected": 1} for i, k in enumerate(keys)]).to_csv(
        root / "outcomes.csv", index=False)
    pd.DataFrame([{"reader_id": "R1", **k, "score": 3, "call": 0} for k in keys]).to_csv(
        root / "readings.csv", index=False)
    return root


@pytest.fixture
def quiet():
    return lambda message: None
