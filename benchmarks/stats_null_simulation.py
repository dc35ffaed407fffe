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
* coverage of the model's AUC CI: DeLong (naive), Obuchowski clustered (every
  ``ci_method`` of ``clustered_auc``), and the patient bootstrap (percentile and BCa).

``--by-patients 10,15,25,40,60,100`` prints instead, for each patient count, the
coverage and mean width of every clustered interval and of the patient bootstrap:
of 0.5 under the null, or with ``--effect E`` (the model's log-odds rise by E on pCR
lesions) of the true AUC, estimated as the mean AUC of ``--truth-reps`` further
cohorts of that size (lesions of one patient share a patient effect, so the AUC
the interval estimates depends a little on the patient count).

``--lesion-counts cohort`` draws 1–5 lesions with the synthetic cohort's weights
(``lesions.count_weights``); ``uniform`` (default) draws 1–5 with equal weights.

Usage: python benchmarks/stats_null_simulation.py [--reps 1000] [--seed 0]
       [--patients 100] [--n-boot 1000] [--alpha 0.05] [--cluster-sd 1.0]
       [--lesion-counts uniform|cohort] [--by-patients 10,15,... [--effect 0] [--truth-reps 10000]]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from dlm_ml.data.synthetic.config import LesionConfig  # noqa: E402
from dlm_ml.stats import (  # noqa: E402
    CLUSTERED_AUC_CI_METHODS,
    DEFAULT_CLUSTERED_AUC_CI,
    cluster_bootstrap_auc,
    clustered_auc,
    clustered_auc_ci,
    clustered_auc_difference,
    delong_auc_ci,
    delong_test,
    roc_auc,
)

# P(1..5 lesions); None: equal weights, drawn as before the option existed (same figures per seed)
LESION_COUNTS = {"uniform": None, "cohort": tuple(LesionConfig().count_weights)}


def draw_cohort(rng: np.random.Generator, n_patients: int, cluster_sd: float, weights=None, effect: float = 0.0):
    """(truth, model, reader, clusters) of one simulated cohort; ``effect`` = 0 is the null."""
    if weights is None:
        sizes = rng.integers(1, 6, n_patients)
    else:
        p = np.asarray(weights, float) / np.sum(weights)
        sizes = rng.choice(np.arange(1, p.size + 1), n_patients, p=p)
    clusters = np.repeat(np.arange(n_patients), sizes)
    n = clusters.size
    # pCR clustered by patient: lesion-level prevalence ~ 0.35 on average
    risk = rng.normal(-0.6, cluster_sd, n_patients)[clusters]
    truth = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    look = rng.normal(0, cluster_sd, n_patients)[clusters]  # how a patient's lesions look
    # a "probability"; independent of truth when effect = 0
    model = 1 / (1 + np.exp(-(look + rng.normal(size=n) + effect * truth)))
    latent = look + rng.normal(size=n)
    reader = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) + 1  # ordinal 1..5
    return truth, model, reader.astype(float), clusters


def mc(hits: int, n: int) -> str:
    p = hits / max(n, 1)
    return f"{p:.3f} (MC SE {np.sqrt(p * (1 - p) / max(n, 1)):.3f}, n={n})"


def summary(args, weights) -> None:
    """Type-I errors and coverages at one patient count (``--patients``)."""
    rng = np.random.default_rng(args.seed)
    clustered_keys = [f"cover_clustered_{m}" for m in CLUSTERED_AUC_CI_METHODS]
    keys = ["reject_delong_paired", "reject_obuchowski_paired", "cover_delong", *clustered_keys,
            "cover_boot_percentile", "cover_boot_bca"]
    hits = {k: 0 for k in keys}
    done = {k: 0 for k in keys}
    n_lesions = []
    boot_failed = 0
    t0 = time.perf_counter()
    for rep in range(args.reps):
        truth, model, reader, cl = draw_cohort(rng, args.patients, args.cluster_sd, weights)
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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an AUC of 0 or 1 with very few patients
                c = clustered_auc(truth, model, cl, alpha=args.alpha, ci_method="normal")
        except ValueError:  # a cohort with too few patients of one class: skip it
            continue
        for method in CLUSTERED_AUC_CI_METHODS:
            lo, hi, _ = clustered_auc_ci(c.auc, c.se, c.n_clusters, alpha=args.alpha, ci_method=method)
            record(f"cover_clustered_{method}", lo <= 0.5 <= hi)
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
        f"alpha={args.alpha} cluster_sd={args.cluster_sd} lesion_counts={args.lesion_counts}"
    )
    labels = {
        "reject_delong_paired": "type-I error, paired DeLong (model vs reader, lesions independent)",
        "reject_obuchowski_paired": "type-I error, Obuchowski clustered difference (model vs reader)",
        "cover_delong": "coverage of 0.5, DeLong CI of model AUC (ignores patients)",
        **{f"cover_clustered_{m}": f"coverage of 0.5, Obuchowski clustered CI of model AUC, {m}"
           + (" (default)" if m == DEFAULT_CLUSTERED_AUC_CI else "") for m in CLUSTERED_AUC_CI_METHODS},
        "cover_boot_percentile": "coverage of 0.5, patient bootstrap percentile CI",
        "cover_boot_bca": "coverage of 0.5, patient bootstrap BCa CI",
    }
    for k in keys:
        print(f"  {labels[k]}: {mc(hits[k], done[k])}")
    print(f"  bootstrap replicates undefined (one class only), total: {boot_failed}")
    print(f"  elapsed: {elapsed:.1f} s")


def true_auc(rng: np.random.Generator, n_patients: int, args, weights) -> float:
    """The AUC the intervals estimate: 0.5 under the null, else the mean AUC of many cohorts."""
    if args.effect == 0:
        return 0.5
    aucs = []
    for _ in range(args.truth_reps):
        truth, model, _, _ = draw_cohort(rng, n_patients, args.cluster_sd, weights, args.effect)
        if 0 < truth.sum() < truth.size:
            aucs.append(roc_auc(truth, model))
    return float(np.mean(aucs))


def by_patients(args, weights) -> None:
    """Coverage and mean width of each interval by patient count: one table row per interval."""
    counts = [int(c) for c in args.by_patients.split(",")]
    methods = [*CLUSTERED_AUC_CI_METHODS, *(("bootstrap percentile", "bootstrap BCa") if args.n_boot else ())]
    cover = {m: {} for m in methods}
    width = {m: {} for m in methods}
    header = []
    t0 = time.perf_counter()
    for n_patients in counts:
        rng = np.random.default_rng([args.seed, n_patients])
        target = true_auc(rng, n_patients, args, weights)
        hits, widths, done, skipped = dict.fromkeys(methods, 0), dict.fromkeys(methods, 0.0), 0, 0
        for rep in range(args.reps):
            truth, model, _, cl = draw_cohort(rng, n_patients, args.cluster_sd, weights, args.effect)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # AUC of 0 or 1; undefined replicates
                try:
                    c = clustered_auc(truth, model, cl, alpha=args.alpha, ci_method="normal")
                except ValueError:  # fewer than 2 patients hold a pCR (or a viable) lesion
                    skipped += 1
                    continue
                done += 1
                intervals = {}
                for method in CLUSTERED_AUC_CI_METHODS:
                    intervals[method] = clustered_auc_ci(c.auc, c.se, c.n_clusters, alpha=args.alpha,
                                                         ci_method=method)[:2]
                if args.n_boot:
                    for method, name in (("percentile", "bootstrap percentile"), ("bca", "bootstrap BCa")):
                        b = cluster_bootstrap_auc(truth, model, cl, n_boot=args.n_boot, alpha=args.alpha,
                                                  method=method, seed=rep)
                        intervals[name] = (b.ci_low, b.ci_high)
            for method, (lo, hi) in intervals.items():
                hits[method] += lo <= target <= hi
                widths[method] += hi - lo
        for m in methods:
            cover[m][n_patients] = hits[m] / done
            width[m][n_patients] = widths[m] / done
        header.append(f"{n_patients} patients: target AUC {target:.4f}, {done} cohorts"
                      + (f" ({skipped} with fewer than 2 patients of a class left out)" if skipped else ""))
    elapsed = time.perf_counter() - t0
    what = "of 0.5 (null)" if args.effect == 0 else f"of the true AUC (effect {args.effect:g})"
    print(f"coverage {what} by patient count: reps={args.reps} seed={args.seed} alpha={args.alpha} "
          f"cluster_sd={args.cluster_sd} lesion_counts={args.lesion_counts} n_boot={args.n_boot}")
    for line in header:
        print(f"  {line}")
    print(f"  Monte-Carlo SE of a coverage near 0.95: {np.sqrt(0.95 * 0.05 / args.reps):.3f}")
    print()
    print("| interval | " + " | ".join(f"{n} patients" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for m in methods:
        label = m + (" (default)" if m == DEFAULT_CLUSTERED_AUC_CI else "")
        print(f"| {label} | " + " | ".join(f"{cover[m][n]:.3f} ({width[m][n]:.3f})" for n in counts) + " |")
    print()
    print(f"coverage (mean width); elapsed: {elapsed:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description="Null simulation for dlm_ml.stats")
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (0: no bootstrap in the table)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--cluster-sd", type=float, default=1.0)
    ap.add_argument("--lesion-counts", choices=sorted(LESION_COUNTS), default="uniform",
                    help="lesions per patient, 1-5: equal weights, or the synthetic cohort's weights")
    ap.add_argument("--by-patients", default=None, metavar="N1,N2,...",
                    help="coverage table of the AUC intervals by patient count instead of the summary")
    ap.add_argument("--effect", type=float, default=0.0, help="with --by-patients: the model's log-odds shift on pCR")
    ap.add_argument("--truth-reps", type=int, default=10000, help="with --effect: cohorts to estimate the true AUC")
    args = ap.parse_args()
    weights = LESION_COUNTS[args.lesion_counts]
    if args.by_patients:
        by_patients(args, weights)
    else:
        summary(args, weights)


if __name__ == "__main__":
    main()
