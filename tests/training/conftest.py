"""A small in-memory patch set and readings for the fold loop (the MLflow store: tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.patches import PatchSet

N_PATIENTS = 12
EDGE = 8  # voxels per patch edge: data.patches.patch_size_mm=16 at spacing_mm=2


@pytest.fixture(scope="module")
def patches() -> PatchSet:
    """Two lesions per patient, one with pCR and one without, so every validation split holds
    both classes; the pCR lesion is brighter (learnable, but the test does not rely on it)."""
    rng = np.random.default_rng(0)
    rows = [{"patient_id": f"P{p:03d}", "lesion_id": f"L{k}", "pcr": k} for p in range(N_PATIENTS) for k in (0, 1)]
    lesions = pd.DataFrame(rows)
    image = rng.normal(0, 1, size=(len(lesions), 4, EDGE, EDGE, EDGE)).astype(np.float32)
    image += lesions.pcr.to_numpy()[:, None, None, None, None].astype(np.float32)
    return PatchSet(image=image, present=np.ones((len(lesions), 4), bool), lesions=lesions,
                    channel_names=["baseline_ct", "baseline_adc", "presurgery_ct", "presurgery_adc"],
                    spacing_mm=2.0, cache_key="in-memory")


@pytest.fixture(scope="module")
def readings(patches) -> pd.DataFrame:
    """Two readers whose calls are right for most lesions."""
    rng = np.random.default_rng(1)
    rows = []
    for reader in ("R1", "R2"):
        for lesion in patches.lesions.itertuples():
            call = lesion.pcr if rng.random() < 0.75 else 1 - lesion.pcr
            rows.append({"reader_id": reader, "patient_id": lesion.patient_id, "lesion_id": lesion.lesion_id,
                         "score": 2 + 2 * call, "call": call})
    return pd.DataFrame(rows)
