"""A tabular cohort with known signal: lesion features of the kinds the baselines read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def lesion_feature_frame(n_patients: int = 60, seed: int = 0, signal: float = 1.5) -> pd.DataFrame:
    """``patient_id, lesion_id, pcr`` plus clinical columns, measurements and ``*__*`` radiomics
    columns; ``shrinkage``, ``cea_presurgery`` and two radiomics columns carry the signal."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        patient_effect = rng.normal(0, 0.5)
        for lesion in range(int(rng.integers(1, 4))):
            latent = patient_effect + rng.normal(0, 1)
            pcr = int(latent + rng.normal(0, 0.8) > 0.3)
            d0 = float(np.exp(np.log(15) + 0.4 * rng.normal()))
            shrink = np.clip(0.3 * signal * latent + 0.2 + 0.15 * rng.normal(), -0.3, 1.0)
            d1 = 0.0 if shrink > 0.8 else d0 * (1 - shrink)
            rows.append({
                "patient_id": f"P{p:03d}", "lesion_id": f"L{lesion + 1}", "pcr": pcr,
                "age": float(rng.normal(60, 10)), "sex": "M" if rng.uniform() < 0.6 else "F",
                "cea_baseline": float(np.exp(2.5 + rng.normal())),
                "cea_presurgery": float(np.exp(2.0 - 0.5 * signal * latent + 0.5 * rng.normal())),
                "chemo_regimen": str(rng.choice(["FOLFOX", "CAPOX", "FOLFIRI"])),
                "chemo_cycles": float(rng.integers(4, 12)),
                "diameter_mm": d0, "diameter_presurgery_mm": d1, "disappeared": float(d1 == 0),
                "shrinkage": 1 - d1 / d0,
                "baseline_adc_roi__mean": float(1100 + 80 * rng.normal()),
                "presurgery_adc_roi__mean": float(1200 + 150 * signal * latent + 80 * rng.normal()),
                **{f"baseline_ct_roi__noise{k}": float(rng.normal()) for k in range(30)},
                "delta_ct_roi__signal": float(signal * latent + rng.normal()),
            })
    return pd.DataFrame(rows)


@pytest.fixture
def lesion_frame() -> pd.DataFrame:
    return lesion_feature_frame()
