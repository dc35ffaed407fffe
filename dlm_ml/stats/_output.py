"""How :mod:`dlm_ml.stats` turns results into JSON values and fixed-width text.

One JSON-cleaning helper and one number formatter for the whole statistics package (the
package may not import the rest of dlm_ml, so it keeps its own). Only numpy and pandas.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__: list[str] = []  # private module: nothing is re-exported


def to_plain(value: Any) -> Any:
    """Plain Python values for ``json.dumps(..., allow_nan=False)``.

    Results with ``to_dict()`` become their dict, dataclasses their fields, DataFrames lists
    of records, arrays lists, numpy scalars Python scalars; NaN and ±inf become ``None``
    (JSON has neither).
    """
    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = value.to_dict(orient="records") if isinstance(value, pd.DataFrame) else value.to_dict()
    elif hasattr(value, "to_dict") and not isinstance(value, dict):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt_num(x: Any, spec: str = ".6f") -> str:
    """A number for a fixed-width table: ``NA`` when missing or NaN, ``inf``/``-inf`` spelt out."""
    if x is None or (isinstance(x, (float, np.floating)) and math.isnan(x)):
        return "NA"
    if isinstance(x, (float, np.floating)) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def fmt_p(p: Any) -> str:
    """A p-value: four significant digits, scientific below 1e-4, ``NA`` when undefined."""
    if p is None or not math.isfinite(p):
        return "NA"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Right-aligned fixed-width table with a dashed rule under the header."""
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(header)]
    lines = [indent + "  ".join(str(h).rjust(w) for h, w in zip(header, widths)),
             indent + "  ".join("-" * w for w in widths)]
    lines += [indent + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
