"""File names built from data stay inside their folder."""

from __future__ import annotations

import re

import pytest

from dlm_ml.utils.paths import UnsafePathError, confined_path, safe_component


@pytest.mark.parametrize("part", ["P001", "L2", "baseline_ct.nii.gz", "P001_L2.png", "a.b-c_d"])
def test_plain_parts_make_a_path_inside_the_folder(tmp_path, part):
    path = confined_path(tmp_path, "P001", part)
    assert path == tmp_path / "P001" / part
    assert path.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("bad", ["", ".", "..", "../../../../x", "a/b", "a\\b", "x..y", "/abs", "nul\0"])
def test_a_part_that_could_leave_the_folder_is_refused_naming_the_data(tmp_path, bad):
    with pytest.raises(UnsafePathError, match=re.escape(f"patient P001, lesion {bad}: file name part")):
        confined_path(tmp_path, "P001", f"{bad}", about=f"patient P001, lesion {bad}")
    with pytest.raises(ValueError, match=re.escape(f"lesion id {bad!r} is not a plain file-name component")):
        safe_component(bad, "lesion id")


def test_a_part_built_around_an_id_is_checked_whole(tmp_path):
    # the id sits inside a longer name, as in "<patient>_<lesion>.png": still refused
    with pytest.raises(UnsafePathError, match=r"'P001_\.\./\.\./x\.png'"):
        confined_path(tmp_path, "P001_../../x.png", about="patient P001, lesion ../../x")
