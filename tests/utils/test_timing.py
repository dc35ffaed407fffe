"""The stage record: every stage once, in the order it ended, with its wall seconds and cores."""

from __future__ import annotations

import time

import pytest

from dlm_ml.utils import timing
from dlm_ml.utils.parallel import available_cores


@pytest.fixture(autouse=True)
def empty_record():
    timing.reset_stages()
    yield
    timing.reset_stages()


def test_stages_in_the_order_they_ended_with_wall_seconds_and_cores():
    with timing.stage("synthesis"):
        time.sleep(0.05)
    with timing.stage("validation"):
        pass
    rows = timing.stage_rows()
    assert [r["stage"] for r in rows] == ["synthesis", "validation"]
    assert list(rows[0]) == list(timing.STAGE_COLUMNS)
    assert rows[0]["seconds"] >= 0.05 and rows[1]["seconds"] < rows[0]["seconds"]
    assert {r["cores"] for r in rows} == {available_cores()}


def test_nested_stage_ends_first_and_is_inside_its_parent():
    with timing.stage("patch extraction"):
        with timing.stage("registration"):
            time.sleep(0.02)
    inner, outer = timing.stage_rows()
    assert (inner["stage"], outer["stage"]) == ("registration", "patch extraction")
    assert outer["seconds"] >= inner["seconds"] >= 0.02


def test_a_stage_that_fails_is_recorded_and_the_error_passes():
    with pytest.raises(RuntimeError, match="disk full"):
        with timing.stage("registration"):
            raise RuntimeError("disk full")
    assert [r["stage"] for r in timing.stage_rows()] == ["registration"]


def test_reset_forgets_and_rows_are_a_copy():
    timing.record_stage("fold 0", 12.5, cores=3)
    rows = timing.stage_rows()
    assert rows == [{"stage": "fold 0", "seconds": 12.5, "cores": 3}]
    rows.clear()
    assert len(timing.stage_rows()) == 1
    timing.reset_stages()
    assert timing.stage_rows() == []
