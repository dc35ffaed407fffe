"""A small random patch set for the data-module and sampler tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml.data.patches import PatchSet


def random_patch_set(n_lesions: int) -> PatchSet:
    """``n_lesions`` lesions, two per patient, random 2-channel 8³ patches at 2 mm, random pCR (seed 0)."""
    rng = np.random.default_rng(0)
    lesions = pd.DataFrame({"patient_id": [f"P{i // 2:03d}" for i in range(n_lesions)],
                            "lesion_id": [f"L{i % 2}" for i in range(n_lesions)],
                            "pcr": rng.integers(0, 2, n_lesions)})
    image = rng.normal(size=(n_lesions, 2, 8, 8, 8)).astype(np.float32)
    return PatchSet(image, np.ones((n_lesions, 2), bool), lesions, ["baseline_ct", "baseline_adc"], 2.0, "key")
