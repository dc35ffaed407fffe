"""Null-effect simulation: type-I error and CI coverage of the dlm_ml AUC statistics.

Each replicate draws a cohort of patients with 1–5 lesions. pCR is clustered
within patients (a patient random effect on its log-odds); the model score and
a reader's 1–5 confidence score share a patient effect (so lesions of a
patient look alike and model and reader are correlated) but carry NO
information about pCR: every true AUC is 0.5 and the true model − reader
difference is 0.

Printed, with Monte-Carlo standard errors:
* type-I error of the paired DeLong test (lesions treated as independent) and
  of Obuchowski's clustered difference test, model vs reader;
* coverage of the model's AUC CI: DeLong (naive), Obuchowski clustered, and the
  patient bootstrap (percentile and BCa).

Usage: python benchmarks/stats_null_simulation.py [--reps 1000] [--seed 0]
       [--patients 100] [--n-boot 1000] [--alpha 0.05] [--cluster-sd 1.0]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from dlm_ml.stats import (  # noqa: E402
    cluster_bootstrap_auc,
    clustered_auc,
    clustered_auc_difference,
    delong_auc_ci,
    delong_test,
)


def draw_cohort(rng: np.random.Generator, n_patients: int, cluster_sd: float):
    sizes = rng.integers(1, 6, n_patients)
    clusters = np.repeat(np.arange(n_patients), sizes)
    n = clusters.size
    # pCR clustered by patient: lesion-level prevalence ~ 0.35 on average
    risk = rng.normal(-0.6, cluster_sd, n_patients)[clusters]
    truth = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    look = rng.normal(0, cluster_sd, n_patients)[clusters]  # how a patient's lesions look
    model = 1 / (1 + np.exp(-(look + rng.normal(size=n))))  # a "probability", independent of truth
    latent = look + rng.normal(size=n)
    reader = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1  # ordinal 1..5
    return truth, model, reader.astype(float), clusters


def main() -> None:
    ap = argparse.ArgumentParser(description="Null simulation for dlm_ml.stats")
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--cluster-sd", type=float, default=1.0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    keys = [
        "reject_delong_paired",
        "reject_obuchowski_paired",
        "cover_delong",
        "cover_clustered",
        "cover_boot_percentile",
        "cover_boot_bca",
    ]
    hits = {k: 0 for k in keys}
    done = {k: 0 for k in keys}
    n_lesions = []
    boot_failed = 0
    t0 = time.perf_counter()
    for rep in range(args.reps):
        truth, model, reader, cl = draw_cohort(rng, args.patients, args.cluster_sd)
        n_lesions.append(truth.size)

        def record(key, value):
            hits[key] += bool(value)
            done[key] += 1

        try:
            record("reject_delong_paired", delong_test(truth, model, reader, alpha=args.alpha).p_value < args.alpha)
            record(
                "reject_obuchowski_paired",
                clustered_auc_difference(truth, model, reader, cl, alpha=args.alpha).p_value < args.alpha,
            )
            d = delong_auc_ci(truth, model, alpha=args.alpha)
            record("cover_delong", d.ci_low <= 0.5 <= d.ci_high)
            c = clustered_auc(truth, model, cl, alpha=args.alpha)
            record("cover_clustered", c.ci_low <= 0.5 <= c.ci_high)
        except ValueError:  # a cohort with too few patients of one class: skip it
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # failures are counted below
            for method in ("percentile", "bca"):
                b = cluster_bootstrap_auc(
                    truth, model, cl, n_boot=args.n_boot, alpha=args.alpha, method=method, seed=rep
                )
                record(f"cover_boot_{method}", b.ci_low <= 0.5 <= b.ci_high)
                boot_failed += b.n_failed
    elapsed = time.perf_counter() - t0

    print(
        f"null simulation: reps={args.reps} seed={args.seed} patients={args.patients} "
        f"lesions/replicate mean={np.mean(n_lesions):.0f} n_boot={args.n_boot} "
        f"alpha={args.alpha} cluster_sd={args.cluster_sd}"
    )
    labels = {
        "reject_delong_paired": "type-I error, paired DeLong (model vs reader, lesions independent)",
        "reject_obuchowski_paired": "type-I error, Obuchowski clustered difference (model vs reader)",
        "cover_delong": "coverage of 0.5, DeLong CI of model AUC (ignores patients)",
        "cover_clustered": "coverage of 0.5, Obuchowski clustered CI of model AUC",
        "cover_boot_percentile": "coverage of 0.5, patient bootstrap percentile CI",
        "cover_boot_bca": "coverage of 0.5, patient bootstrap BCa CI",
    }
    for k in keys:
        p = hits[k] / max(done[k], 1)
        mcse = np.sqrt(p * (1 - p) / max(done[k], 1))
        print(f"  {labels[k]}: {p:.3f} (MC SE {mcse:.3f}, n={done[k]})")
    print(f"  bootstrap replicates undefined (one class only), total: {boot_failed}")
    print(f"  elapsed: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
