"""A file under its final name is complete: atomic_path and the atomic writers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlm_ml.utils.atomic import TEMP_NAME, atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text


def test_success_renames_to_the_final_name_keeping_the_suffix(tmp_path):
    final = tmp_path / "sub" / "image.nii.gz"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.endswith(".nii.gz") and TEMP_NAME.match(tmp.name)
        assert not final.exists()  # nothing under the final name while writing
        tmp.write_bytes(b"complete")
    assert final.read_bytes() == b"complete"
    assert [p.name for p in final.parent.iterdir()] == ["image.nii.gz"]


def test_a_failing_writer_leaves_neither_the_final_file_nor_the_temporary_one(tmp_path):
    final = tmp_path / "table.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(final) as tmp:
            tmp.write_text("half a ta")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_keeps_the_previous_complete_file(tmp_path):
    final = tmp_path / "report.json"
    atomic_write_text(final, "old")
    with pytest.raises(ValueError):
        with atomic_path(final) as tmp:
            tmp.write_text("new, half")
            raise ValueError
    assert final.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_writers_round_trip(tmp_path):
    table = pd.DataFrame({"patient_id": ["007", "7"], "fold": [0, 1]})
    atomic_write_csv(tmp_path / "folds.csv", table)
    assert (tmp_path / "folds.csv").read_text() == "patient_id,fold\n007,0\n7,1\n"
    atomic_write_json(tmp_path / "m.json", {"auc": np.float64(0.5), "ci": [np.nan, 1.0]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"auc": 0.5, "ci": [None, 1.0]}
