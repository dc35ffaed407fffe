"""Fixtures shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .refdata import REFDATA


@pytest.fixture(scope="session")
def refdata() -> Path:
    """Root of the imaging reference files; skips the test when they are absent."""
    if not (REFDATA / "README.md").is_file():
        pytest.skip(f"imaging reference data not found at {REFDATA} (shared/refdata/imaging beside the repository)")
    return REFDATA
