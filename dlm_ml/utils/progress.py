"""One progress bar for long work: shown on a terminal, silent in logs.

A bar redrawn with carriage returns turns a log file into noise, so when the stream is not a
terminal (a batch job, CI, a captured subprocess) the bar is off (tqdm's ``disable=None``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)``, on a terminal only, and never when ``enabled`` is false."""
    return tqdm(iterable, disable=None if enabled else True, **options)
