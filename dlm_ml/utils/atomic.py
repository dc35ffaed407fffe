"""Write files so that a reader never sees a partial one: temporary name, fsync, rename.

Every writer in dlm_ml goes through :func:`atomic_path`: a file that exists under its final
name is complete. The temporary name starts with a dot and holds ``.tmp<pid>`` (see
:data:`TEMP_NAME`), so a crashed writer's leftovers are recognisable and never mistaken for
results.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from dlm_ml.utils.jsonable import to_jsonable

#: How a temporary file of :func:`atomic_path` is named: ``.<stem>.tmp<pid><suffixes>``.
TEMP_NAME = re.compile(r"^\..+\.tmp\d+")


def _suffixes(name: str) -> str:
    """The compound suffix a reader keys on (``.nii.gz``, ``.csv``), kept on the temporary name."""
    for compound in (".nii.gz", ".tar.gz"):
        if name.endswith(compound):
            return compound
    return Path(name).suffix


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``,
    on failure removed. Libraries that pick the format from the suffix (SimpleITK, numpy,
    matplotlib) see the same suffix as the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _suffixes(path.name)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: str | os.PathLike, table: pd.DataFrame, **to_csv: Any) -> Path:
    return atomic_write_text(path, table.to_csv(index=False, lineterminator="\n", **to_csv))


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    """``value`` made JSON-able by :func:`dlm_ml.utils.jsonable.to_jsonable` first."""
    return atomic_write_text(path, json.dumps(to_jsonable(value), indent=indent, sort_keys=False) + "\n")
