"""Exported patches and montages stay in the export folder whatever the ids hold (a second line
behind validation, which refuses such ids)."""

from __future__ import annotations

import re

import pytest

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.patches import PatchConfig, build_patches
from dlm_ml.data.patches.export import export_patches
from dlm_ml.utils.paths import UnsafePathError

ESCAPING = "../../escaped"


def _with_lesion_id(cohort, patches, value):
    """The cohort and patch set with lesion P001/L1 renamed, as a table read without validation would give."""
    for table in (cohort.lesions, cohort.outcomes, patches.lesions):
        table.loc[(table.patient_id == "P001") & (table.lesion_id == "L1"), "lesion_id"] = value


def test_an_id_that_would_leave_the_export_folder_is_refused_and_nothing_written_outside(handmade_cohort, tmp_path):
    cohort = load_cohort(handmade_cohort)
    config = PatchConfig(patch_size_mm=16, spacing_mm=2)
    patches = build_patches(cohort, config, tmp_path / "cache", progress=False, log=lambda m: None)
    _with_lesion_id(cohort, patches, ESCAPING)
    export_dir = tmp_path / "run" / "export"
    with pytest.raises(UnsafePathError, match=re.escape(f"patient P001, lesion {ESCAPING}: file name part")):
        export_patches(cohort, patches, config, export_dir, progress=False)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(export_dir)
               and not p.is_relative_to(tmp_path / "cache") and not p.is_relative_to(handmade_cohort)]
    assert outside == []
