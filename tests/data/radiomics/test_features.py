"""Features: known intensities, deltas, missing images, determinism, cache, errors, IBSI check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.radiomics import (
    DEFAULT_FAMILIES,
    RadiomicsConfig,
    RadiomicsError,
    feature_columns,
    radiomics_features,
    roi_mean_column,
)
from dlm_ml.data.radiomics.extract import _delta_triples
from dlm_ml.data.radiomics.mirp_adapter import intensity_features

from .conftest import LESION_VALUE, write_cohort

# Small and quick: a 3 mm ring (reaching 1 mm past the drawn lesion into tissue), first-order
# statistics only (the texture families are checked on one region below).
CONFIG = RadiomicsConfig(ring_mm=3.0, margin_mm=1.0, families=("statistics",))
LESIONS = [
    {"patient_id": "P1", "lesion_id": "L1", "x_mm": 15.0, "y_mm": 20.0, "z_mm": 18.0, "diameter_mm": 8.0},
    {"patient_id": "P2", "lesion_id": "L1", "x_mm": 22.0, "y_mm": 19.5, "z_mm": 21.0, "diameter_mm": 8.0},
    {"patient_id": "P3", "lesion_id": "L1", "x_mm": 20.0, "y_mm": 20.0, "z_mm": 20.0, "diameter_mm": 8.0},
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = write_cohort(tmp_path_factory.mktemp("radiomics") / "cohort", LESIONS,
                        skip_images=[("P2", "presurgery", "adc")])
    return load_cohort(root)


@pytest.fixture(scope="module")
def table(cohort, tmp_path_factory):
    return radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path_factory.mktemp("cache"),
                              progress=False, log=lambda m: None)


def test_one_row_per_lesion_in_input_order(cohort, table):
    lesions = cohort.labelled_lesions().iloc[::-1]
    assert list(table.features.columns[:2]) == ["patient_id", "lesion_id"]
    assert list(table.features.columns[2:]) == feature_columns(CONFIG)
    assert len(table) == 3 and not table.from_cache and table.seconds_per_lesion > 0
    # reversed input, reversed rows
    again = radiomics_features(cohort, lesions, CONFIG, table_dir(cohort), progress=False, log=lambda m: None)
    assert list(again.features.patient_id) == list(lesions.patient_id)


def table_dir(cohort):
    return cohort.root.parent / "cache_reversed"


def test_uniform_lesion_mean_and_adc_change(table):
    f = table.features.set_index("patient_id")
    for (t, m), value in LESION_VALUE.items():
        for pid in ("P1", "P3"):
            assert f.loc[pid, roi_mean_column(t, m)] == pytest.approx(value, abs=1e-3)
            assert f.loc[pid, f"{t}_{m}_roi__stat_mean"] == pytest.approx(value, abs=1e-3)
    change = f[roi_mean_column("presurgery", "adc")] / f[roi_mean_column("baseline", "adc")] - 1
    assert change["P1"] == pytest.approx(0.25, abs=1e-6) and change["P3"] == pytest.approx(0.25, abs=1e-6)
    # the ring reaches into the tissue (1500 µm²/s) around the lesion
    assert f.loc["P1", "baseline_adc_ring__mean"] > 1050


def test_delta_is_presurgery_minus_baseline_exactly(table):
    f = table.features
    for earlier, later, delta in _delta_triples(CONFIG):
        np.testing.assert_array_equal(f[delta].to_numpy(), f[later].to_numpy() - f[earlier].to_numpy())
    assert f["delta_adc_roi__mean"].iloc[0] == pytest.approx(250.0, abs=1e-3)


def test_missing_image_gives_nan_columns_and_keeps_the_lesion(table):
    f = table.features.set_index("patient_id")
    missing = [c for c in f.columns if c.startswith("presurgery_adc_") or c.startswith("delta_adc_")]
    assert f.loc["P2", missing].isna().all()
    present = [c for c in f.columns if c.startswith("baseline_") and "_roi__" in c and "stat_" in c]
    assert f.loc["P2", present].notna().all()
    assert f.loc["P1", missing].notna().any()


def test_cache_hit_is_identical_and_a_changed_parameter_misses(cohort, table, tmp_path):
    cache = tmp_path / "cache"
    first = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, cache, progress=False, log=lambda m: None)
    hit = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, cache, progress=False, log=lambda m: None)
    assert hit.from_cache and hit.cache_key == first.cache_key
    pd.testing.assert_frame_equal(hit.features, first.features, check_exact=True)
    pd.testing.assert_frame_equal(first.features, table.features, check_exact=True)
    changed = RadiomicsConfig(**{**CONFIG.to_dict(), "ring_mm": 4.0})
    other = radiomics_features(cohort, cohort.labelled_lesions(), changed, cache, progress=False, log=lambda m: None)
    assert not other.from_cache and other.cache_key != first.cache_key
    subset = radiomics_features(cohort, cohort.labelled_lesions().iloc[:2], CONFIG, cache, progress=False,
                                log=lambda m: None)
    assert not subset.from_cache and len(subset) == 2


def test_one_and_two_workers_give_identical_features(cohort, table, tmp_path):
    two = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path, workers=2, progress=False,
                             log=lambda m: None)
    assert not two.from_cache
    pd.testing.assert_frame_equal(two.features, table.features, check_exact=True)


def test_empty_roi_error_names_every_patient_and_lesion(cohort, tmp_path):
    lesions = cohort.labelled_lesions().copy()
    lesions.loc[0, "x_mm"] = 500.0
    lesions.loc[2, "diameter_mm"] = 0.0
    with pytest.raises(RadiomicsError) as err:
        radiomics_features(cohort, lesions, CONFIG, tmp_path, progress=False, log=lambda m: None)
    message = str(err.value)
    assert "patient P1, lesion L1" in message and "outside" in message
    assert "patient P3, lesion L1" in message and "P2" not in message


def test_first_order_features_agree_with_numpy():
    """IBSI plausibility: mirp's first-order statistics of a textured ADC ROI are numpy's."""
    rng = np.random.default_rng(3)
    image = rng.gamma(9.0, 130.0, (16, 16, 16)).astype(np.float32)
    z, y, x = np.mgrid[:16, :16, :16]
    roi = (x - 8) ** 2 + (y - 7) ** 2 + (z - 8) ** 2 <= 25
    values = image[roi].astype(np.float64)
    feats = intensity_features(image, roi, 1.0, CONFIG.intensity["adc"], ("statistics",))
    assert feats["stat_mean"] == pytest.approx(values.mean(), rel=1e-5)
    assert feats["stat_var"] == pytest.approx(values.var(), rel=1e-4)
    assert feats["stat_skew"] == pytest.approx(stats.skew(values), rel=1e-3)
    assert feats["stat_median"] == pytest.approx(np.median(values), rel=1e-5)
    assert feats["stat_p90"] == pytest.approx(np.percentile(values, 90), rel=1e-5)
    assert feats["stat_max"] == pytest.approx(values.max(), rel=1e-6)
    # CT: mirp rounds interpolated intensities to whole HU (IBSI), numpy's mean of the rounded values
    ct = (image - 1000.0) / 10.0
    feats = intensity_features(ct, roi, 1.0, CONFIG.intensity["ct"], ("statistics",))
    assert feats["stat_mean"] == pytest.approx(np.round(ct[roi].astype(np.float64)).mean(), rel=1e-6)


def test_texture_families_give_finite_features():
    rng = np.random.default_rng(4)
    image = rng.normal(80.0, 30.0, (14, 14, 14)).astype(np.float32)
    z, y, x = np.mgrid[:14, :14, :14]
    roi = (x - 7) ** 2 + (y - 7) ** 2 + (z - 7) ** 2 <= 20
    feats = intensity_features(image, roi, 1.0, CONFIG.intensity["ct"], DEFAULT_FAMILIES)
    for family in ("stat_", "cm_", "rlm_", "szm_"):
        values = [v for k, v in feats.items() if k.startswith(family)]
        assert len(values) >= 10 and np.isfinite(values).all(), family


def test_followup_refused_by_the_config():
    with pytest.raises(ValueError, match="allow_post_decision"):
        RadiomicsConfig(timepoints=["baseline", "presurgery", "followup"])


def test_a_cache_file_holding_other_lesions_is_not_a_hit(cohort, tmp_path):
    first = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path, progress=False,
                               log=lambda m: None)
    path = tmp_path / f"radiomics-{first.cache_key}.npz"
    with np.load(path) as data:
        arrays = dict(data)
    arrays["patient_id"] = arrays["patient_id"][::-1].copy()
    np.savez(path, **arrays)
    again = radiomics_features(cohort, cohort.labelled_lesions(), CONFIG, tmp_path, progress=False,
                               log=lambda m: None)
    assert not again.from_cache
    pd.testing.assert_frame_equal(again.features, first.features, check_exact=True)


def test_means_only_without_mirp_equal_the_full_tables_means(cohort, table, tmp_path):
    means_only = RadiomicsConfig(ring_mm=3.0, margin_mm=1.0, families=())
    slim = radiomics_features(cohort, cohort.labelled_lesions(), means_only, tmp_path, progress=False,
                              log=lambda m: None)
    assert all(c.endswith("__mean") for c in slim.features.columns[2:])
    shared = list(slim.features.columns)
    pd.testing.assert_frame_equal(slim.features, table.features[shared])
