"""Patches of every lesion (prediction): one row per lesion of lesions.csv, NaN outcome where none
is known, the same patches as the labelled-only build, and a cache of their own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.data.patches import PatchConfig, build_patches, patch_cache_key
from dlm_ml.data.patches.extract import PATCH_ALGORITHM_VERSION
from dlm_ml.utils.hashing import payload_digest

CONFIG = PatchConfig(patch_size_mm=8, spacing_mm=2)
UNLABELLED = [("P002", "L1"), ("P003", "L2")]


@pytest.fixture
def partly_labelled(handmade_cohort):
    """The handmade cohort (4 patients × 2 lesions) with no outcome for two of its lesions."""
    outcomes = pd.read_csv(handmade_cohort / "outcomes.csv", dtype=str)
    keep = [(p, lid) not in UNLABELLED for p, lid in zip(outcomes.patient_id, outcomes.lesion_id)]
    outcomes[keep].to_csv(handmade_cohort / "outcomes.csv", index=False)
    return handmade_cohort


def _build(cohort, cache, messages, **kwargs):
    return build_patches(cohort, CONFIG, cache, progress=False, log=messages.append, **kwargs)


def test_every_lesion_gets_a_row_and_labelled_patches_are_unchanged(partly_labelled, tmp_path):
    cohort = load_cohort(partly_labelled)
    cache, messages = tmp_path / "cache", []
    labelled = _build(cohort, cache, messages)
    every = _build(cohort, cache, messages, all_lesions=True)

    lesions_csv = pd.read_csv(partly_labelled / "lesions.csv", dtype=str)
    expected = sorted(zip(lesions_csv.patient_id, lesions_csv.lesion_id))
    assert list(zip(every.lesions.patient_id, every.lesions.lesion_id)) == expected
    assert list(every.lesions.columns) == ["patient_id", "lesion_id", "pcr"]
    assert every.lesions.pcr.dtype == np.float64
    keys = list(zip(every.lesions.patient_id, every.lesions.lesion_id))
    no_outcome = np.array([k in UNLABELLED for k in keys])
    assert every.lesions.pcr[no_outcome].isna().all() and every.lesions.pcr[~no_outcome].notna().all()
    assert len(labelled) == 6 and not labelled.lesions.pcr.isna().any()

    # The labelled lesions: same ids in the same order, same outcome, same patches.
    rows = np.flatnonzero(~no_outcome)
    pd.testing.assert_frame_equal(every.lesions.iloc[rows][["patient_id", "lesion_id"]].reset_index(drop=True),
                                  labelled.lesions[["patient_id", "lesion_id"]])
    assert np.array_equal(every.lesions.pcr.to_numpy()[rows], labelled.lesions.pcr.to_numpy(float))
    assert np.array_equal(every.image[rows], labelled.image)
    assert np.array_equal(every.present[rows], labelled.present)
    assert np.abs(every.image[no_outcome]).sum() > 0  # the unlabelled lesions were cropped too


def test_the_two_selections_do_not_share_a_cache_entry(partly_labelled, tmp_path):
    cohort = load_cohort(partly_labelled)
    cache, messages = tmp_path / "cache", []
    labelled = _build(cohort, cache, messages)
    every = _build(cohort, cache, messages, all_lesions=True)
    assert labelled.cache_key != every.cache_key
    assert (cache / f"patches-{labelled.cache_key}.npz").is_file()
    assert (cache / f"patches-{every.cache_key}.npz").is_file()
    # Each selection finds its own entry again, untouched by the other's extraction.
    again_labelled = _build(cohort, cache, messages)
    again_every = _build(cohort, cache, messages, all_lesions=True)
    assert ["miss" in m for m in messages if "patch cache" in m] == [True, True, False, False]
    assert np.array_equal(again_labelled.image, labelled.image) and len(again_labelled) == 6
    assert np.array_equal(again_every.image, every.image) and len(again_every) == 8


def test_the_labelled_only_key_is_unchanged(partly_labelled):
    """Runs record the labelled-only key: its payload must stay exactly what it was."""
    cohort = load_cohort(partly_labelled)
    fingerprint = cohort_fingerprint(cohort.root)
    payload = {"algorithm": PATCH_ALGORITHM_VERSION, "cohort": fingerprint, "config": CONFIG.to_dict(),
               "registration": None}
    assert patch_cache_key(cohort, CONFIG, fingerprint) == payload_digest(payload)
    assert patch_cache_key(cohort, CONFIG, fingerprint, all_lesions=True) == payload_digest(
        {**payload, "lesions": "all"})


def test_a_cohort_without_outcomes_is_cropped_whole(partly_labelled, tmp_path):
    (partly_labelled / "outcomes.csv").unlink()
    (partly_labelled / "readings.csv").unlink()
    cohort = load_cohort(partly_labelled, require_outcomes=False)
    every = _build(cohort, tmp_path / "cache", [], all_lesions=True)
    assert len(every) == 8 and every.lesions.pcr.isna().all() and every.present.all()
