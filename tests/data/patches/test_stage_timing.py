"""Patch extraction is timed as its own stage, from the cache too, once per build."""

from __future__ import annotations

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.patches import PatchConfig, build_patches
from dlm_ml.utils import timing


def test_patch_extraction_is_one_stage_per_build(handmade_cohort, tmp_path):
    timing.reset_stages()
    cohort = load_cohort(handmade_cohort)
    for _ in range(2):  # extracted, then read from the cache
        build_patches(cohort, PatchConfig(patch_size_mm=16), tmp_path, progress=False, log=lambda m: None)
    rows = timing.stage_rows()
    timing.reset_stages()
    assert [r["stage"] for r in rows] == ["patch extraction", "patch extraction"]
    assert all(r["seconds"] > 0 for r in rows)
