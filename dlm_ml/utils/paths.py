"""File names built from data (ids, channel and method names) that cannot leave their folder.

Validation refuses unsafe ids before any file is written; these checks are the second line, at
the place each file name is built, so that a table read without validation (or a future reader
of another format) still cannot make a writer create files outside its output folder.
"""

from __future__ import annotations

import os
from pathlib import Path

# A part holding one of these could name another folder or end the string early.
_SEPARATORS = ("/", "\\", "\0")


class UnsafePathError(ValueError):
    """A file-name part built from data would reach outside its folder."""


def safe_component(value, what: str) -> str:
    """``str(value)`` when it is one plain file-name component: not empty, not ``.``, holding no
    ``..``, ``/``, ``\\`` or NUL. Otherwise :class:`UnsafePathError` naming ``what`` and the value
    (``what`` says where it comes from, e.g. ``"lesion id"``)."""
    text = str(value)
    if not text or text == "." or ".." in text or any(ch in text for ch in _SEPARATORS):
        raise UnsafePathError(f"{what} {value!r} is not a plain file-name component (empty, '.', or holding '..', "
                              "'/', '\\' or NUL): refusing to write outside the output folder")
    return text


def confined_path(folder: str | os.PathLike, *parts, about: str = "") -> Path:
    """``folder/part/part/...`` where every part is one plain component (:func:`safe_component`),
    so the path stays inside ``folder`` whatever the parts hold.

    ``about`` names the data a part was built from (``"patient P001, lesion L2"``); the error
    then starts with it. Raises :class:`UnsafePathError`, writing nothing."""
    what = f"{about}: file name part" if about else "file name part"
    return Path(folder).joinpath(*(safe_component(part, what) for part in parts))
