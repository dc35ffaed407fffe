"""How numbers are printed in tables and reports: one set of formatters."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DASH = "–"


def _is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(float(x)))


def fmt_number(x: Any, digits: int = 3) -> str:
    """A number for a table: ``digits`` decimals, integers as integers, missing or undefined
    as an en dash, infinities spelt out."""
    if _is_nan(x):
        return DASH
    if isinstance(x, (float, np.floating)) and math.isinf(float(x)):
        return "∞" if x > 0 else "−∞"
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return str(int(x))
    return f"{float(x):.{digits}f}"


def fmt_p(p: Any) -> str:
    """A p-value: three decimals, ``<0.001`` below that."""
    if _is_nan(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{float(p):.3f}"


def p_text(p: Any) -> str:
    """``p = 0.034`` or ``p < 0.001`` for running text."""
    value = fmt_p(p)
    return f"p {value[0]} {value[1:]}" if value.startswith("<") else f"p = {value}"


def fmt_ci(estimate: Any, low: Any, high: Any, digits: int = 3) -> str:
    """``0.812 (0.745 to 0.871)``."""
    if _is_nan(estimate):
        return DASH
    return f"{fmt_number(estimate, digits)} ({fmt_number(low, digits)} to {fmt_number(high, digits)})"
