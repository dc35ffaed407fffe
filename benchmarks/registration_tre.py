"""Registration accuracy and speed on a generated (misaligned) synthetic cohort.

Target registration error (TRE) at the lesion centres, against the generator's truth
(``truth/lesion_positions.csv``), before (images used as they lie in their own physical
space) and after registration:

* CT → baseline CT (later visits; rigid motion plus breathing deformation);
* ADC → CT of the same visit (the direct multi-modal registration);
* ADC → baseline CT (composed through the visit's CT).

Prints the distributions (median, 95th percentile, max), the flagged registrations and the
timings per pair and per patient. Usage::

    python benchmarks/registration_tre.py --n-patients 20 --workers 2

The cohort is generated under ``--work-dir`` (reused when it exists with the same settings);
the registration cache is always fresh so the timings are real.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import load_cohort, schema
from dlm_ml.data.registration import RegistrationConfig, register_cohort
from dlm_ml.data.registration.accuracy import tre_table
from dlm_ml.data.synthetic import generate_cohort, make_config, preset_names


def _dist(values: pd.Series) -> str:
    v = values.to_numpy(float)
    return f"n {len(v):4d}  median {np.median(v):6.2f}  p95 {np.percentile(v, 95):6.2f}  max {v.max():6.2f} mm"


def report(tre: pd.DataFrame, regs, elapsed: float, workers: int) -> str:
    lines = []
    groups = [
        ("CT -> baseline CT", tre[tre.modality == "ct"], "composed"),
        ("ADC -> CT of the same visit", tre[tre.modality == "adc"], "direct"),
        ("ADC -> baseline CT (composed)", tre[tre.modality == "adc"], "composed"),
    ]
    lines.append("target registration error at lesion centres (mm)")
    for name, g, kind in groups:
        if len(g):
            lines.append(f"  {name}")
            lines.append(f"    without registration: {_dist(g[f'{kind}_before'])}")
            lines.append(f"    registered:           {_dist(g[f'{kind}_after'])}")
    for tp, g in tre[tre.modality == "ct"].groupby("timepoint"):
        lines.append(f"  CT -> baseline CT, {tp}: registered {_dist(g['composed_after'])}")
    t = regs.table
    fresh = t[~t["cached"]]
    lines.append("timing (fresh cache)")
    for mod, g in fresh.groupby("modality"):
        s = g["seconds"]
        lines.append(f"  per pair, {mod} moving: median {s.median():.1f} s, p95 {s.quantile(0.95):.1f} s, "
                     f"max {s.max():.1f} s (n {len(s)})")
    per_patient = t.groupby("patient_id")["patient_seconds"].first()
    lines.append(f"  per patient ({t.groupby('patient_id').size().median():.0f} images): median "
                 f"{per_patient.median():.1f} s, max {per_patient.max():.1f} s")
    lines.append(f"  cohort: {len(per_patient)} patients in {elapsed:.0f} s wall with {workers} worker(s) "
                 f"({elapsed / max(len(per_patient), 1):.1f} s per patient)")
    ct = t[t.modality == "ct"]["lesion_correlation"].dropna()
    if len(ct):
        # the CT -> CT check around the lesions: its margin over failure.ct_lesion_correlation_min
        lines.append(f"lesion-region correlation, CT -> baseline CT: min {ct.min():.3f}, 5th percentile "
                     f"{ct.quantile(0.05):.3f}, median {ct.median():.3f} (n {len(ct)}; flagged below "
                     f"{regs.config.failure.ct_lesion_correlation_min:g})")
    s = regs.summary()
    lines.append(f"flagged: {s['n_flagged']} of {s['n_images']} registrations")
    lines += [f"  {line.strip()}" for line in regs.summary_text().splitlines()[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-patients", type=int, default=20)
    ap.add_argument("--preset", default="default", choices=preset_names())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="patients registered in parallel")
    ap.add_argument("--timepoints", default="baseline,presurgery,followup")
    ap.add_argument("--no-bspline", action="store_true", help="rigid + affine only for CT -> CT")
    ap.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "dlm_registration_benchmark"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="synthetic config override, e.g. geometry.motion.breathing_mm=8 (repeatable)")
    ap.add_argument("--csv", help="write the per-lesion TRE table here")
    args = ap.parse_args(argv)

    work = Path(args.work_dir)
    tag = "_".join(sorted(args.set)).replace("/", "_")
    cohort_dir = work / f"cohort_{args.preset}_{args.seed}_{args.n_patients}{'_' + tag if tag else ''}"
    if not (cohort_dir / schema.COHORT_YAML).is_file():
        t0 = time.perf_counter()
        generate_cohort(cohort_dir, make_config(args.preset, args.set, n_patients=args.n_patients, seed=args.seed),
                        progress=False, overwrite=True)
        print(f"generated {args.n_patients} patients ({args.preset}, seed {args.seed}) in "
              f"{time.perf_counter() - t0:.0f} s")
    cohort = load_cohort(cohort_dir)
    config = RegistrationConfig(workers=args.workers, bspline=not args.no_bspline)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    channels = [(t, m) for t in args.timepoints.split(",") for m in schema.MODALITIES]
    t0 = time.perf_counter()
    regs = register_cohort(cohort, config, cache, channels=channels, workers=args.workers, progress=False,
                           log=lambda m: None)
    elapsed = time.perf_counter() - t0
    tre = tre_table(cohort, regs)
    print(f"registration benchmark: preset {args.preset}, seed {args.seed}, {args.n_patients} patients, "
          f"timepoints {args.timepoints}, B-spline {'off' if args.no_bspline else 'on'}"
          + (f", overrides {args.set}" if args.set else ""))
    print(report(tre, regs, elapsed, args.workers))
    if args.csv:
        tre.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
