"""The pure pieces of benchmarks/scaling.py: growth exponents, the stage split of a dlm-train
timing table, and the peak memory of a child process tree."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from tests.benchmarks.scripts import load_script

scaling = load_script("scaling")

SIZES = [100, 300, 1000]


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_growth_exponent_recovers_a_power_law(power):
    seconds = [3.7 * n**power for n in SIZES]
    assert scaling.growth_exponent(SIZES, seconds) == pytest.approx(power, abs=1e-9)


def test_growth_exponent_is_undefined_without_two_sizes_or_with_a_zero_time():
    assert np.isnan(scaling.growth_exponent([100, 100], [1.0, 2.0]))
    assert np.isnan(scaling.growth_exponent(SIZES, [1.0, 0.0, 2.0]))


def test_verdict_calls_quadratic_growth_worse_than_linear():
    assert scaling.growth_verdict(scaling.growth_exponent(SIZES, [n**2 for n in SIZES]), 0.1) == "worse than linear"
    assert scaling.growth_verdict(1.05, 0.1) == "linear or better"
    assert scaling.growth_verdict(0.4, 0.1) == "linear or better"
    assert scaling.growth_verdict(float("nan"), 0.1) == "n/a"


def test_train_stages_sums_the_folds_and_keeps_the_rest_as_other():
    timings = pd.DataFrame({"stage": ["validation", "registration", "patch extraction", "fold 0", "fold 1", "fold 10",
                                      "evaluation"],
                            "seconds": [1.0, 20.0, 3.0, 5.0, 6.0, 7.0, 2.0], "cores": 2})
    stages = scaling.train_stages(timings, wall_s=50.0)
    assert stages["training"] == pytest.approx(18.0)
    assert stages["registration"] == pytest.approx(20.0)
    assert stages["dlm-train other"] == pytest.approx(50.0 - 44.0)
    assert "synthesis" not in stages


def test_timings_path_is_read_from_the_line_dlm_train_prints(tmp_path):
    text = f"epoch 1\n[2026-12-01 INFO] {scaling.TIMINGS_LINE_PREFIX}{tmp_path}/timings.csv\nMLflow run abc\n"
    assert scaling.timings_path(text) == tmp_path / "timings.csv"
    assert scaling.timings_path("no table here\n") is None


def test_peak_memory_counts_the_largest_process_of_the_childs_tree(tmp_path):
    """A child that starts a grandchild holding 300 MiB: the peak is the grandchild's, not the child's."""
    grandchild = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    measured = scaling.run_measured([sys.executable, "-c", child], tmp_path / "child.log")
    assert measured.returncode == 0
    assert measured.peak_bytes >= 300 * 2**20
    small = scaling.run_measured([sys.executable, "-c", "pass"], tmp_path / "small.log")
    assert small.peak_bytes < 200 * 2**20
