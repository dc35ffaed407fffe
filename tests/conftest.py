"""Shared fixtures. Every test writes under pytest's tmp_path; nothing touches ~/.cache."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from dlm_ml.tracking.tracker import MlflowTracker
from dlm_ml.utils.signals import raise_on_sigterm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLM_ML_CACHE", str(tmp_path_factory.mktemp("dlm_cache")))
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def write_volume(path: Path, array_zyx: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_handmade_cohort(root: Path, n_patients: int = 4, lesions_per_patient: int = 2) -> Path:
    """A small valid cohort written by hand (independent of the synthetic generator):
    40×40×20 mm CT (1×1×2 mm) and ADC (2×2×4 mm) per timepoint, lesions near the centre."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cohort.yaml").write_text(yaml.safe_dump({
        "name": "handmade", "version": "1", "timepoints": ["baseline", "presurgery", "followup"],
        "modalities": ["ct", "adc"], "description": "test cohort"}))
    patients, images, lesions, outcomes, readings = [], [], [], [], []
    rng = np.random.default_rng(0)
    for p in range(n_patients):
        pid = f"P{p + 1:03d}"
        patients.append({"patient_id": pid, "site": "A", "age": 60 + p})
        for t in ("baseline", "presurgery"):
            ct = rng.normal(100, 10, size=(10, 40, 40)).astype(np.float32)
            write_volume(root / f"images/{pid}/{t}_ct.nii.gz", ct, spacing=(1, 1, 2))
            adc = rng.normal(1100, 50, size=(5, 20, 20)).astype(np.float32)
            write_volume(root / f"images/{pid}/{t}_adc.nii.gz", adc, spacing=(2, 2, 4))
            images += [{"patient_id": pid, "timepoint": t, "modality": "ct", "path": f"images/{pid}/{t}_ct.nii.gz"},
                       {"patient_id": pid, "timepoint": t, "modality": "adc", "path": f"images/{pid}/{t}_adc.nii.gz"}]
        for k in range(lesions_per_patient):
            lid = f"L{k + 1}"
            lesions.append({"patient_id": pid, "lesion_id": lid, "x_mm": 15.0 + 8 * k, "y_mm": 20.0, "z_mm": 9.0,
                            "diameter_mm": 8.0})
            pcr = (p + k) % 2
            outcomes.append({"patient_id": pid, "lesion_id": lid, "pcr": pcr, "reference": "pathology",
                             "resected": 1})
            for r in ("R1", "R2"):
                readings.append({"reader_id": r, "patient_id": pid, "lesion_id": lid, "score": 3 + pcr, "call": pcr})
    for name, rows in (("patients.csv", patients), ("images.csv", images), ("lesions.csv", lesions),
                       ("outcomes.csv", outcomes), ("readings.csv", readings)):
        pd.DataFrame(rows).to_csv(root / name, index=False)
    return root


@pytest.fixture
def handmade_cohort(tmp_path) -> Path:
    return make_handmade_cohort(tmp_path / "cohort")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> MlflowTracker:
    """A throw-away MLflow store (SQLite) per test module."""
    root = tmp_path_factory.mktemp("mlflow")
    return MlflowTracker(f"sqlite:///{root}/mlflow.db", "tests", artifact_location=str(root / "artifacts"))


@pytest.fixture
def sigterm_handler():
    """SIGTERM raised as KeyboardInterrupt (dlm_ml.utils.signals) for the test, the previous
    handler restored after it."""
    previous = signal.getsignal(signal.SIGTERM)
    assert raise_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)
