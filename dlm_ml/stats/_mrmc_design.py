"""The reader-study table of :func:`dlm_ml.stats.mrmc.mrmc` checked and laid out as arrays.

A long table (one row per reader × test × case) becomes a fully crossed rating array of
shape (tests, readers, cases) with one truth value and one cluster code per case; every
way the table can fail that layout is reported with the column and an example row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__: list[str] = []  # private module: dlm_ml.stats.mrmc is the public home


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class _Design:
    tests: list
    readers: list
    ratings: np.ndarray  # (t, r, c)
    truth: np.ndarray  # (c,) int8
    clusters: np.ndarray  # (c,) codes 0..G-1 (one per case when unclustered)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"`{name}` has no column(s) {', '.join(repr(c) for c in missing)}; "
            f"available columns: {', '.join(repr(str(c)) for c in df.columns)}."
        )


def _examples(values: Sequence, k: int = 3) -> str:
    values = list(values)
    if not values:
        return ""
    more = ", ..." if len(values) > k else ""
    return "(e.g. " + ", ".join(repr(_native(v)) for v in values[:k]) + more + ")"


def _levels(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().unique())
        return [c for c in series.cat.categories if c in present]
    uniq = list(pd.unique(series))
    try:
        return sorted(uniq)
    except TypeError:  # mixed, unorderable labels: keep first appearance
        return uniq


def _design(data, *, reader, test, case, truth, rating, cluster) -> _Design:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame, got {type(data).__name__}.")
    cols = [reader, test, case, truth, rating] + ([cluster] if cluster is not None else [])
    roles = {"reader": reader, "test": test, "case": case, "truth": truth, "rating": rating}
    if len(set(roles.values())) < len(roles):
        raise ValueError(f"The column arguments must name different columns, got {roles}.")
    _require_columns(data, cols, "data")
    if data.empty:
        raise ValueError("`data` has no rows.")
    df = data[list(dict.fromkeys(cols))]  # cluster may be the case column itself
    for col in (reader, test, case) + ((cluster,) if cluster is not None else ()):
        n_na = int(df[col].isna().sum())
        if n_na:
            raise ValueError(f"Column '{col}' has {n_na} missing value(s).")

    ratings = pd.to_numeric(df[rating], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(ratings)
    if bad.any():
        first = df[rating].iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"Column '{rating}' must hold finite numbers; {int(bad.sum())} row(s) are "
            f"missing or non-numeric (e.g. {_native(first)!r})."
        )
    truth_num = pd.to_numeric(df[truth], errors="coerce")
    if truth_num.isna().any() or not truth_num.isin([0, 1]).all():
        odd = df.loc[truth_num.isna() | ~truth_num.isin([0, 1]), truth].unique()[:5]
        raise ValueError(
            f"Column '{truth}' must be binary (0/1); found other value(s) "
            f"{[_native(v) for v in odd]}."
        )

    dup = df.duplicated([reader, test, case])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise ValueError(
            f"{int(dup.sum())} duplicated reader × test × case row(s), e.g. "
            f"{reader}={_native(row[reader])!r}, {test}={_native(row[test])!r}, "
            f"{case}={_native(row[case])!r}."
        )

    per_case = pd.DataFrame({"case": df[case].to_numpy(), "truth": truth_num.to_numpy()})
    if cluster is not None:
        per_case["cluster"] = df[cluster].to_numpy()
    for col, label in (("truth", truth), ("cluster", cluster)):
        if col not in per_case:
            continue
        n_val = per_case.groupby("case", sort=False)[col].nunique()
        if (n_val > 1).any():
            raise ValueError(
                f"Column '{label}' must be constant within each case; "
                f"{int((n_val > 1).sum())} case(s) disagree, e.g. case "
                f"{_native(n_val.index[n_val > 1][0])!r}."
            )

    tests, readers, cases = _levels(df[test]), _levels(df[reader]), _levels(df[case])
    t, r, c = len(tests), len(readers), len(cases)
    if t < 2:
        raise ValueError(
            f"MRMC compares tests: column '{test}' needs at least 2 levels, found {t}."
        )
    if len(df) != t * r * c:
        ti = pd.Categorical(df[test], categories=tests).codes
        ri = pd.Categorical(df[reader], categories=readers).codes
        ci = pd.Categorical(df[case], categories=cases).codes
        filled = np.zeros((t, r, c), dtype=bool)
        filled[ti, ri, ci] = True
        missing = np.argwhere(~filled)
        i, j, k = missing[0]
        raise ValueError(
            "The OR analysis needs a fully crossed design (every reader reads every "
            f"case under every test): {len(missing)} of {t * r * c} reader × test × "
            f"case cells are missing, e.g. {reader}={_native(readers[j])!r}, "
            f"{test}={_native(tests[i])!r}, {case}={_native(cases[k])!r}."
        )

    ti = pd.Categorical(df[test], categories=tests).codes
    ri = pd.Categorical(df[reader], categories=readers).codes
    ci = pd.Categorical(df[case], categories=cases).codes
    grid = np.empty((t, r, c))
    grid[ti, ri, ci] = ratings

    first = per_case.drop_duplicates("case").set_index("case").reindex(cases)
    truth_arr = first["truth"].to_numpy().astype(np.int8)
    n_pos = int(truth_arr.sum())
    if n_pos == 0 or n_pos == c:
        raise ValueError(
            f"Column '{truth}' must contain both classes; all {c} cases are {int(truth_arr[0])}."
        )
    if cluster is not None:
        groups = pd.factorize(first["cluster"].to_numpy())[0].astype(np.intp)
    else:
        groups = np.arange(c, dtype=np.intp)
    return _Design(tests=tests, readers=readers, ratings=grid, truth=truth_arr,
                   clusters=groups)

