"""Write files so that a reader never sees a partial one: temporary name, then rename."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    return atomic_write_text(path, table.to_csv(index=False))
