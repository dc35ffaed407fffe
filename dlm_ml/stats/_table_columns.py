"""Reading a reader-study table and checking its columns: every problem names the table and the
column (the input side of :mod:`dlm_ml.stats.tables`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = []  # private: the public names are re-exported by dlm_ml.stats.tables


class TableError(ValueError):
    """Bad input table; the message names the table and the column."""


def read_table(path: str | Path, id_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV file; ``id_columns`` stay strings ("1.10" and "1.1" are different cases)."""
    p = Path(path)
    if not p.exists():
        raise TableError(f"file not found: {path}")
    if p.is_dir():
        raise TableError(f"{path} is a folder, not a CSV file")
    try:
        header = pd.read_csv(p, nrows=0).columns
        return pd.read_csv(p, dtype={c: str for c in id_columns if c in header})
    except pd.errors.EmptyDataError:
        raise TableError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: cannot be read as CSV ({exc})") from None


def _require(df: pd.DataFrame, where: str, columns: Sequence[str | None]) -> None:
    for col in columns:
        if col is not None and col not in df.columns:
            raise TableError(f"{where}: no column '{col}'; available columns: {', '.join(map(str, df.columns))}")


def _truth(df: pd.DataFrame, where: str, col: str, positive: str | None = None) -> np.ndarray:
    """0/1 ``int8`` truth: the column as 0/1, or 1 where it equals ``positive``."""
    raw = df[col]
    if positive is not None:
        if raw.isna().any():
            raise TableError(f"{where}: column '{col}' has {int(raw.isna().sum())} missing value(s)")
        hit = raw.astype(str) == positive
        if not hit.any() or hit.all():
            raise TableError(f"{where}: column '{col}' must hold the --positive value {positive!r} and at least "
                             f"one other; values are {pd.unique(raw.astype(str))[:5].tolist()}")
        return hit.to_numpy(dtype=np.int8)
    if raw.dtype == bool:
        return raw.to_numpy(dtype=np.int8)
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() | ~num.isin([0, 1])
    if bad.any():
        examples = pd.unique(raw[bad].astype(str))[:5].tolist()
        raise TableError(f"{where}: column '{col}' must be binary (0/1); found {int(bad.sum())} other "
                         f"value(s), e.g. {examples}")
    if num.nunique() < 2:
        raise TableError(f"{where}: column '{col}' must contain both 0 and 1; all values are {int(num.iloc[0])}")
    return num.to_numpy(dtype=np.int8)


def _scores(df: pd.DataFrame, where: str, col: str) -> np.ndarray:
    num = pd.to_numeric(df[col], errors="coerce")
    bad = ~np.isfinite(num.to_numpy(dtype=float))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise TableError(f"{where}: column '{col}' must be numeric; {int(bad.sum())} value(s) are missing "
                         f"or non-numeric (first at data row {first + 1}: {df[col].iloc[first]!r})")
    return num.to_numpy(dtype=float)


def _no_missing(df: pd.DataFrame, where: str, columns: Sequence[str]) -> None:
    for col in columns:
        n = int(df[col].isna().sum())
        if n:
            raise TableError(f"{where}: column '{col}' has {n} missing value(s)")


def parse_threshold_grid(spec: str) -> np.ndarray:
    """``"START:STOP:STEP"`` (inclusive) or ``"a,b,c"`` as an array of thresholds."""
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            # Rounded so that 0.01:0.99:0.01 gives exactly 0.25, as users expect.
            return np.round(start + step * np.arange(n), 12)
        return np.array([float(x) for x in spec.split(",") if x.strip()])
    except ValueError:
        raise ValueError(f"must be START:STOP:STEP (e.g. 0.01:0.99:0.01) or a comma list, got {spec!r}") from None
