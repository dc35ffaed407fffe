"""Print timings of the dlm_ml.stats hot paths (one CPU thread).

Targets: DeLong on 100,000 lesions < 1 s; 2,000 patient-bootstrap replicates
of the AUC over 1,000 lesions in 300 patients < 2 s; MRMC on Van Dyke.

Usage: python benchmarks/stats_speed.py [--repeat 3]
"""

from __future__ import annotations

import os

# One core: set before numpy is imported so BLAS pools start single-threaded.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlm_ml.stats import (  # noqa: E402
    cluster_bootstrap_auc,
    cluster_bootstrap_proportion,
    clustered_auc,
    delong_auc_ci,
    delong_test,
)
from dlm_ml.stats.mrmc import mrmc  # noqa: E402

REFDATA = Path(__file__).resolve().parents[1].parent / "shared/refdata/stats"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    n = 100_000
    truth = rng.integers(0, 2, n)
    s1 = truth * 0.8 + rng.normal(size=n)
    s2 = np.round(truth * 0.5 + rng.normal(size=n), 2)  # with ties
    t = best_of(lambda: delong_auc_ci(truth, s1), args.repeat)
    print(f"delong_auc_ci, {n:,} lesions: {t:.3f} s (target < 1 s)")
    t = best_of(lambda: delong_test(truth, s1, s2), args.repeat)
    print(f"delong_test (paired), {n:,} lesions: {t:.3f} s")

    n_pat, n_les = 300, 1000
    # every patient holds >= 1 lesion; the other 700 lesions fall on random patients
    clusters = np.sort(np.r_[np.arange(n_pat), rng.integers(0, n_pat, n_les - n_pat)])
    u = rng.normal(size=n_pat)[clusters]
    y = (rng.random(n_les) < 0.4).astype(int)
    s = 0.8 * y + u + rng.normal(size=n_les)
    npat = np.unique(clusters).size
    t = best_of(lambda: cluster_bootstrap_auc(y, s, clusters, n_boot=2000, seed=1), args.repeat)
    print(f"cluster_bootstrap_auc, 2,000 replicates, {n_les:,} lesions in {npat} patients: {t:.3f} s (target < 2 s)")
    t = best_of(lambda: cluster_bootstrap_auc(y, s, clusters, n_boot=2000, seed=1, method="bca"), args.repeat)
    print(f"cluster_bootstrap_auc BCa (+ cluster jackknife), same data: {t:.3f} s")
    t = best_of(lambda: clustered_auc(y, s, clusters), args.repeat)
    print(f"clustered_auc (Obuchowski), same data: {t * 1000:.2f} ms")

    call = (rng.random(n_les) < 0.5).astype(int)
    t = best_of(lambda: cluster_bootstrap_proportion(y, call, clusters, metric="ppv", n_boot=2000, seed=1),
                args.repeat)
    print(f"cluster_bootstrap_proportion (PPV), 2,000 replicates, same data: {t * 1000:.1f} ms")

    path = REFDATA / "MRMCaov_VanDyke.csv"
    if not path.exists():
        print(f"mrmc: reference data not found at {path}")
        return
    df = pd.read_csv(path, dtype={"case2": str, "case3": str})
    t = best_of(lambda: mrmc(df, test="treatment"), args.repeat)
    print(f"mrmc (OR + Hillis, jackknife), Van Dyke 5 readers x 2 tests x 114 cases: {t:.3f} s")


if __name__ == "__main__":
    main()
