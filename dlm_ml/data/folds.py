"""Patient-grouped, label-stratified cross-validation folds.

Lesions of one patient share biology, chemotherapy and scanner; a patient in two
folds would leak, so folds are made of patients and checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from dlm_ml.utils.hashing import payload_digest


class FoldLeakageError(AssertionError):
    """A patient appears in more than one fold (or in both training and test)."""


def make_folds(lesions: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Assign each patient to one of ``n_folds`` folds.

    Parameters
    ----------
    lesions : DataFrame with ``patient_id`` and ``pcr`` (one row per lesion).
    n_folds : int, >= 2.
    seed : int; the same seed and lesions give the same folds.

    Returns
    -------
    DataFrame ``patient_id, fold`` sorted by patient, one row per patient.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    patients = lesions["patient_id"].astype(str).to_numpy()
    n_patients = len(np.unique(patients))
    if n_patients < n_folds:
        raise ValueError(f"{n_patients} patients cannot be split into {n_folds} folds")
    # Sorting first makes the split independent of table row order.
    order = np.lexsort((lesions["lesion_id"].astype(str).to_numpy(), patients))
    labels = lesions["pcr"].to_numpy()[order]
    groups = patients[order]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    assignment: dict[str, int] = {}
    for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        for p in np.unique(groups[test_idx]):
            assignment[str(p)] = fold
    folds = pd.DataFrame(sorted(assignment.items()), columns=["patient_id", "fold"])
    check_no_leakage(folds)
    return folds


def check_no_leakage(folds: pd.DataFrame) -> None:
    """Raise :class:`FoldLeakageError` if any patient is in more than one fold."""
    counts = folds.groupby("patient_id")["fold"].nunique()
    leaking = counts[counts > 1].index.tolist()
    if leaking:
        raise FoldLeakageError(f"patient(s) in more than one fold: {leaking[:10]}")


def check_disjoint(train_patients, test_patients, what: str = "training and test") -> None:
    overlap = sorted(set(train_patients) & set(test_patients))
    if overlap:
        raise FoldLeakageError(f"patient(s) in both {what}: {overlap[:10]}")


def split_validation(lesions: pd.DataFrame, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training lesions (by patient, stratified by label) into fit and validation rows.

    The validation lesions serve early stopping, checkpoint selection and choosing
    thresholds: never the test fold. Returns boolean masks (fit, validation) over rows.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_splits = max(2, int(round(1 / val_fraction)))
    groups = lesions["patient_id"].astype(str).to_numpy()
    n_splits = min(n_splits, len(np.unique(groups)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_idx = next(splitter.split(np.zeros(len(lesions)), lesions["pcr"].to_numpy(), groups))
    val = np.zeros(len(lesions), dtype=bool)
    val[val_idx] = True
    check_disjoint(groups[~val], groups[val], "fit and validation sets")
    return ~val, val


def folds_hash(folds: pd.DataFrame) -> str:
    """Stable short digest of a fold assignment (``[patient_id, fold]`` pairs sorted by patient),
    logged so a split can be recognised and reused; independent of row order."""
    pairs = folds.sort_values("patient_id", kind="stable")[["patient_id", "fold"]]
    return payload_digest([[str(p), int(f)] for p, f in pairs.itertuples(index=False)])
