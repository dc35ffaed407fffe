"""The one set of number formatters of tables and reports."""

from __future__ import annotations

import math

import numpy as np

from dlm_ml.utils.formatting import DASH, fmt_ci, fmt_number, fmt_p, p_text


def test_fmt_number():
    assert fmt_number(0.81234) == "0.812" and fmt_number(0.81234, digits=1) == "0.8"
    assert fmt_number(12) == "12" and fmt_number(np.int64(12)) == "12"
    assert fmt_number(True) == "1.000"  # a boolean is not a count
    assert fmt_number(None) == DASH and fmt_number(math.nan) == DASH and fmt_number(np.float32("nan")) == DASH
    assert fmt_number(math.inf) == "∞" and fmt_number(-np.inf) == "−∞"


def test_p_values():
    assert fmt_p(0.0344) == "0.034" and fmt_p(0.0009) == "<0.001" and fmt_p(0.001) == "0.001"
    assert fmt_p(math.nan) == DASH
    assert p_text(0.0344) == "p = 0.034" and p_text(1e-5) == "p < 0.001"


def test_fmt_ci():
    assert fmt_ci(0.8123, 0.7449, 0.8712) == "0.812 (0.745 to 0.871)"
    assert fmt_ci(0.5, 0.4, 0.6, digits=2) == "0.50 (0.40 to 0.60)"
    assert fmt_ci(math.nan, 0.1, 0.2) == DASH
