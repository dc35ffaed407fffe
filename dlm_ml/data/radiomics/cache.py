"""The radiomics table on disk, keyed by content (as the patches: ``patch_cache_key``).

``<cache_dir>/radiomics-<key>.npz`` holds the feature values (float64, exact bits), the column
names and the lesion ids; ``.json`` beside it the manifest (config, seconds per lesion measured
when it was computed, partly covered regions). Both are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import Cohort, schema
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.data.radiomics.config import RadiomicsConfig
from dlm_ml.data.radiomics.mirp_adapter import MIRP_VERSION
from dlm_ml.utils.atomic import atomic_path, atomic_write_json
from dlm_ml.utils.hashing import payload_digest

# Bump when regions, sampling or the feature table change, so old caches are never reused.
RADIOMICS_ALGORITHM_VERSION = 1

#: Lesion columns that shape the features (the rest of a lesions table does not).
LESION_INPUT_COLUMNS = ("patient_id", "lesion_id", "x_mm", "y_mm", "z_mm", "diameter_mm", "mask_path", "mask_label")


def lesion_inputs(lesions: pd.DataFrame) -> list[dict]:
    """The requested lesions as plain records (order kept; absent optional columns left out)."""
    cols = [c for c in LESION_INPUT_COLUMNS if c in lesions.columns]
    table = lesions[cols].astype(object).where(lesions[cols].notna(), None)
    return [{k: (v if isinstance(v, (str, type(None))) else float(v)) for k, v in r.items()}
            for r in table.to_dict("records")]


def radiomics_cache_key(cohort: Cohort, config: RadiomicsConfig, lesions: pd.DataFrame, registration=None,
                        fingerprint: str | None = None) -> str:
    """Hash of everything the table depends on: cohort content, the requested lesions (ids,
    positions, masks), every parameter, the registration settings and the content hashes of
    its composed transforms, the algorithm version and mirp's version."""
    payload = {
        "algorithm": RADIOMICS_ALGORITHM_VERSION,
        "mirp": MIRP_VERSION,
        "cohort": fingerprint or cohort_fingerprint(cohort.root),
        "config": config.to_dict(),
        "lesions": lesion_inputs(lesions),
        "registration": None if registration is None else {
            "config": {k: v for k, v in registration.config.to_dict().items()
                       if k not in ("workers", "threads_per_worker")},
            "transforms": registration.content_hashes(),
        },
    }
    return payload_digest(payload)


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"radiomics-{key}.npz"


def write_cached(path: Path, features: pd.DataFrame, manifest: dict) -> None:
    """``features``: ``patient_id``, ``lesion_id``, then float columns."""
    values = features.drop(columns=list(schema.LESION_KEY)).to_numpy(np.float64)
    with atomic_path(path) as tmp:
        np.savez(tmp, values=values, columns=np.array(features.columns[2:], dtype=str),
                 patient_id=features.patient_id.to_numpy(str), lesion_id=features.lesion_id.to_numpy(str))
    atomic_write_json(path.with_suffix(".json"), manifest)


def read_cached(path: Path, lesions: pd.DataFrame) -> tuple[pd.DataFrame, dict] | None:
    """The cached table and its manifest when ``path`` holds exactly ``lesions`` (ids, in order),
    else None."""
    manifest_path = path.with_suffix(".json")
    if not path.is_file() or not manifest_path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        ids = list(zip(data["patient_id"].tolist(), data["lesion_id"].tolist()))
        if ids != list(zip(lesions.patient_id.astype(str), lesions.lesion_id.astype(str))):
            return None
        table = pd.DataFrame(data["values"], columns=data["columns"].tolist())
        table.insert(0, "lesion_id", data["lesion_id"].astype(object))
        table.insert(0, "patient_id", data["patient_id"].astype(object))
    return table, json.loads(manifest_path.read_text())
