"""Patient-grouped, label-stratified cross-validation folds, and the checks every folds table
passes.

Lesions of one patient share biology, chemotherapy and scanner; a patient in two
folds would leak, so folds are made of patients and checked.

A folds table is ``patient_id, fold``, one row per patient. Folds ``>= 0`` are test folds: each
is held out once while the model trains on the others. :data:`DEVELOPMENT_ONLY` (-1) marks a
patient who trains in every fold and is never tested (the development side of a
development/external split, :mod:`dlm_ml.data.validation_design`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from dlm_ml.utils.hashing import payload_digest

#: Fold of a patient who only ever trains (development side of an external validation).
DEVELOPMENT_ONLY = -1
#: Optional column of the predictions table: the label of the lesion's test fold (e.g. "site S2"),
#: shown in the report's per-fold table; without it folds are labelled "fold k".
FOLD_LABEL_COLUMN = "fold_label"


class FoldLeakageError(AssertionError):
    """A patient appears in more than one fold (or in both training and test), or a site is split
    across folds where the design holds sites out whole."""


def held_out_folds(folds: pd.DataFrame) -> list[int]:
    """The test fold ids of a folds table (``patient_id, fold``), ascending: every fold ``>= 0``.

    :data:`DEVELOPMENT_ONLY` patients are in no test fold. A table without a test fold, or with a
    fold id below -1, is refused.
    """
    ids = pd.to_numeric(folds["fold"], errors="coerce")
    bad = folds[ids.isna() | (ids != ids.round()) | (ids < DEVELOPMENT_ONLY)]
    if len(bad):
        first = bad.iloc[0]
        raise ValueError(f"{len(bad)} fold value(s) are not a test fold (an integer >= 0) or {DEVELOPMENT_ONLY} "
                         f"(development only), e.g. patient {first.patient_id}: {first.fold!r}")
    tested = sorted(int(f) for f in ids.unique() if f >= 0)
    if not tested:
        raise ValueError("the folds table holds no test fold (every patient is development only)")
    return tested


def check_sites_not_split(folds: pd.DataFrame, patients: pd.DataFrame, site_column: str = "site") -> None:
    """Raise :class:`FoldLeakageError` if a site's patients are in more than one fold.

    For designs that hold sites out whole (leave-one-site-out, external validation by site): a site
    in two folds would let its scanners and protocols reach both sides of a split. ``patients``:
    ``patient_id`` and ``site_column`` (patients.csv).
    """
    site_of = dict(zip(patients.patient_id.astype(str), patients[site_column].astype(str)))
    sites = folds.patient_id.astype(str).map(site_of)
    if sites.isna().any():
        missing = folds.patient_id[sites.isna()].astype(str).tolist()
        raise ValueError(f"patient(s) of the folds table not in patients.csv: {missing[:10]}")
    per_site = folds.assign(site=sites).groupby("site")["fold"].unique()
    split = {site: sorted(int(f) for f in found) for site, found in per_site.items() if len(found) > 1}
    if split:
        raise FoldLeakageError(f"site(s) in more than one fold: {split}")


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


def fold_rows(lesions: pd.DataFrame, folds: pd.DataFrame, fold: int, val_fraction: float,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of ``lesions`` (``patient_id``, ``pcr``) in the roles of test fold ``fold``:
    (fit, validation, test). Test = the fold's patients; the other patients (development-only
    ones included) are split by :func:`split_validation` with ``seed + fold``. Every model of a
    run — network or not — takes its fold's lesions from here, so they see the same lesions in
    each role."""
    fold = int(fold)
    if fold < 0:
        # Fold DEVELOPMENT_ONLY (-1) holds the patients who train in every fold: never a test set.
        raise ValueError(f"fold {fold} is not a test fold: test folds are >= 0, {DEVELOPMENT_ONLY} marks "
                         "development-only patients")
    fold_of = dict(zip(folds.patient_id.astype(str), folds.fold))
    lesion_fold = lesions.patient_id.astype(str).map(fold_of)
    if lesion_fold.isna().any():
        missing = lesions.patient_id[lesion_fold.isna()].unique().tolist()
        raise ValueError(f"patients without a fold: {missing[:10]}")
    test = (lesion_fold == fold).to_numpy()
    if not test.any():
        raise ValueError(f"fold {fold} holds no lesion")
    train_rows = np.flatnonzero(~test)
    fit_mask, val_mask = split_validation(lesions.iloc[train_rows], val_fraction, seed + fold)
    fit, val, test_rows = train_rows[fit_mask], train_rows[val_mask], np.flatnonzero(test)
    pid = lesions.patient_id.to_numpy()
    check_disjoint(pid[fit], pid[test_rows], "fit and test sets")
    check_disjoint(pid[val], pid[test_rows], "validation and test sets")
    return fit, val, test_rows
