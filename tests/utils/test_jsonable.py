"""to_jsonable: plain JSON values from numpy, pandas, dataclasses and paths."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.utils.jsonable import to_jsonable


@dataclass
class _Estimate:
    auc: float
    ci: tuple[float, float]
    n_lesions: int


def test_numpy_scalars_become_python_numbers():
    out = to_jsonable({"auc": np.float32(0.75), "n": np.int64(12), "flag": np.bool_(True)})
    assert out == {"auc": 0.75, "n": 12, "flag": True}
    assert type(out["auc"]) is float and type(out["n"]) is int and type(out["flag"]) is bool


def test_non_finite_numbers_become_none():
    assert to_jsonable([math.nan, np.float64("nan"), math.inf, -np.inf, 1.5]) == [None, None, None, None, 1.5]
    json.dumps(to_jsonable({"x": np.array([np.nan, 2.0])}), allow_nan=False)  # strict JSON


def test_dataclasses_frames_arrays_and_paths():
    assert to_jsonable(_Estimate(np.float64(0.8), (0.7, np.nan), np.int32(40))) == {
        "auc": 0.8, "ci": [0.7, None], "n_lesions": 40}
    frame = pd.DataFrame({"patient_id": ["P1", "P2"], "prob_pcr": [0.25, np.nan]})
    assert to_jsonable(frame) == [{"patient_id": "P1", "prob_pcr": 0.25}, {"patient_id": "P2", "prob_pcr": None}]
    assert to_jsonable(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
    assert to_jsonable({1: Path("a/b.csv"), "none": None}) == {"1": "a/b.csv", "none": None}
