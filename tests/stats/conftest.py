"""Fixtures for the statistics tests.

The reference datasets live outside the repository, in ``shared/refdata/stats``
next to it (they are GPL/MIT/CC0 data kept out of the code tree). Tests that
need them are skipped, with the reason, when that folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REFDATA_STATS = Path(__file__).resolve().parents[2].parent / "shared/refdata/stats"


@pytest.fixture(scope="session")
def refdata_stats() -> Path:
    if not REFDATA_STATS.is_dir():
        pytest.skip(f"reference data folder not found: {REFDATA_STATS} (expected next to the repository)")
    return REFDATA_STATS


@pytest.fixture(scope="session")
def asah(refdata_stats) -> pd.DataFrame:
    """pROC's aSAH data with ``truth`` = 1 for outcome "Poor" (pROC's case level)."""
    df = pd.read_csv(refdata_stats / "pROC_aSAH.csv")
    df["truth"] = (df["outcome"] == "Poor").astype(int)
    return df


def make_clustered(rng: np.random.Generator, n_clusters: int, *, effect: float = 0.0,
                   max_size: int = 5, cluster_sd: float = 1.0, ties: bool = False):
    """Lesions clustered in patients: a patient effect shifts both score and pCR risk.

    Returns (truth, score, clusters). With ``effect = 0`` the score carries no
    information about truth (true AUC 0.5), yet both are clustered.
    """
    sizes = rng.integers(1, max_size + 1, n_clusters)
    clusters = np.repeat(np.arange(n_clusters), sizes)
    u = rng.normal(0, cluster_sd, n_clusters)[clusters]
    v = rng.normal(0, cluster_sd, n_clusters)[clusters]
    truth = (rng.random(clusters.size) < 1 / (1 + np.exp(-(v - 0.3)))).astype(int)
    score = effect * truth + u + rng.normal(size=clusters.size)
    if ties:
        score = np.round(score, 0)
    return truth, score, clusters


@pytest.fixture(scope="session")
def clustered_factory():
    """The :func:`make_clustered` generator (fixtures avoid importing conftest)."""
    return make_clustered
