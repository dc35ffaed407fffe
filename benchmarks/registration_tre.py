"""Registration accuracy and speed on a generated (misaligned) synthetic cohort.

Target registration error (TRE) at the lesion centres, against the generator's truth
(``truth/lesion_positions.csv``), before (images used as they lie in their own physical
space) and after registration:

* CT → baseline CT (later visits; rigid motion plus breathing deformation);
* ADC → CT of the same visit (the direct multi-modal registration);
* ADC → baseline CT (composed through the visit's CT).

Prints the distributions (median, 95th percentile, max), whether each meets the targets
(median < 2 mm, p95 < 4 mm), the flagged registrations and the timings: per pair, per
patient, and seconds per image (wall time × workers / images registered). Usage::

    python benchmarks/registration_tre.py --n-patients 20 --workers 2
    python benchmarks/registration_tre.py --n-patients 20 --candidates default,v2,fine_affine

``--candidates`` registers the same cohort once per named setting (:data:`CANDIDATES`, each
on a fresh cache) and ends with one comparison line per candidate.

The cohort is generated under ``--work-dir`` (reused when it exists with the same settings);
the registration cache is always fresh so the timings are real.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import load_cohort, schema
from dlm_ml.data.registration import RegistrationConfig, StageConfig, register_cohort
from dlm_ml.data.registration.accuracy import tre_table
from dlm_ml.data.synthetic import generate_cohort, make_config, preset_names

TARGET_MEDIAN_MM, TARGET_P95_MM = 2.0, 4.0


def _stage(transform: str, shrink, sigmas, **kw) -> StageConfig:
    # these candidates predate version 4: image gradients from whole-image filters
    kw.setdefault("gradient_filter", True)
    return StageConfig(transform, shrink_factors=tuple(shrink), smoothing_sigmas_mm=tuple(sigmas), **kw)


def _ct_stages(rigid=((4, 2), (4.0, 2.0)), affine=((2, 1), (2.0, 0.0)), bspline=((2,), (1.0,)), **kw):
    return (_stage("rigid", *rigid, metric="correlation", **kw),
            _stage("affine", *affine, metric="correlation", learning_rate=1.0, **kw),
            _stage("bspline", *bspline, metric="correlation", optimizer="lbfgsb", iterations=20,
                   mesh_spacing_mm=70.0))


def _adc_stages(levels=((4, 2, 1), (4.0, 2.0, 0.0)), **kw):
    return (_stage("rigid", *levels, histogram_bins=64, **kw),)


def _defaults_with(ct: dict | None = None, adc: dict | None = None) -> dict:
    """The package's default stages with some fields replaced (``ct``: in every CT stage, or
    ``{"bspline": {...}}`` for one transform's stage)."""
    def replaced(stages, changes):
        changes = changes or {}
        per = {t: changes[t] for t in ("rigid", "affine", "bspline") if t in changes}
        common = {k: v for k, v in changes.items() if k not in per}
        return tuple(dataclasses.replace(s, **common, **per.get(s.transform, {})) for s in stages)

    config = RegistrationConfig()
    return {"ct_stages": replaced(config.ct_stages, ct), "adc_stages": replaced(config.adc_stages, adc)}


# Settings compared by --candidates: keyword arguments of RegistrationConfig over its defaults.
# Shrink factors are relative to the working spacing (2 mm unless set): 1, 2, 4 = 2, 4, 8 mm. The
# candidates before version 5 registered ADC maps on the 2 mm grid too (adc_working_spacing_mm 2).
ADC_2MM = {"adc_working_spacing_mm": 2.0}
CANDIDATES: dict[str, dict] = {
    # the package's defaults, whatever they are now
    "default": {},
    # the B-spline stage with 5 or 20 iterations (version 4 has 10), or 3 % of the voxels sampled
    "bspline_5": _defaults_with({"bspline": {"iterations": 5}}),
    "bspline_20": _defaults_with({"bspline": {"iterations": 20}}),
    "bspline_3pct": _defaults_with({"bspline": {"sampling_fraction": 0.03}}),
    # the stages before version 3: a 2 mm level in the CT affine stage and in the ADC stage
    "v2": {**ADC_2MM, "ct_stages": _ct_stages(), "adc_stages": _adc_stages()},
    # version 3 (no 2 mm level: CT rigid 8, 4 mm; affine 4 mm; B-spline 4 mm; ADC rigid 8, 4 mm), image
    # gradients from whole-image filters; version 4 is these levels with gradients at the samples
    "coarse": {**ADC_2MM, "ct_stages": _ct_stages(affine=((2,), (2.0,))),
               "adc_stages": _adc_stages(((4, 2), (4.0, 2.0)))},
    # coarser still: CT rigid 8 mm; affine 4 mm; B-spline 8 mm; ADC rigid 8, 4 mm
    "coarsest": {**ADC_2MM,
                 "ct_stages": _ct_stages(rigid=((4,), (4.0,)), affine=((2,), (2.0,)), bspline=((4,), (2.0,))),
                 "adc_stages": _adc_stages(((4, 2), (4.0, 2.0)))},
    # version 4's ADC registration: the same levels (8, 4 mm) on a 2 mm working grid, not 4 mm
    "adc_2mm": {**ADC_2MM, **_defaults_with(adc={"shrink_factors": (4, 2)})},
}


def _dist(values: pd.Series) -> str:
    v = values.to_numpy(float)
    return f"n {len(v):4d}  median {np.median(v):6.2f}  p95 {np.percentile(v, 95):6.2f}  max {v.max():6.2f} mm"


def _groups(tre: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    return [("CT -> baseline CT", tre[tre.modality == "ct"], "composed"),
            ("ADC -> CT of the same visit", tre[tre.modality == "adc"], "direct"),
            ("ADC -> baseline CT (composed)", tre[tre.modality == "adc"], "composed")]


def targets_met(values: pd.Series) -> str:
    """Whether registered TREs meet median < 2 mm and p95 < 4 mm, spelt out."""
    v = values.to_numpy(float)
    med, p95 = np.median(v), np.percentile(v, 95)
    return (f"median {med:.2f} < {TARGET_MEDIAN_MM:g}: {'met' if med < TARGET_MEDIAN_MM else 'NOT MET'}, "
            f"p95 {p95:.2f} < {TARGET_P95_MM:g}: {'met' if p95 < TARGET_P95_MM else 'NOT MET'}")


def seconds_per_image(elapsed: float, workers: int, n_images: int) -> float:
    """Wall time × workers / images: the time one image costs a worker, all included."""
    return elapsed * workers / max(n_images, 1)


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished worker processes: on a
    machine shared with other work, what the registrations cost, where wall time is not."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def report(tre: pd.DataFrame, regs, elapsed: float, workers: int, cpu: float) -> str:
    lines = ["target registration error at lesion centres (mm)"]
    for name, g, kind in _groups(tre):
        if len(g):
            lines.append(f"  {name}")
            lines.append(f"    without registration: {_dist(g[f'{kind}_before'])}")
            lines.append(f"    registered:           {_dist(g[f'{kind}_after'])}")
            lines.append(f"    targets:              {targets_met(g[f'{kind}_after'])}")
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
    lines.append(f"  cohort: {len(per_patient)} patients, {len(t)} images in {elapsed:.0f} s wall with {workers} "
                 f"worker(s): {seconds_per_image(elapsed, workers, len(t)):.2f} s per image (wall x workers / images); "
                 f"{cpu:.0f} CPU s, {cpu / max(len(t), 1):.2f} CPU s per image")
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


def comparison_line(name: str, tre: pd.DataFrame, regs, elapsed: float, workers: int, cpu: float) -> str:
    """One line per candidate: s per image, registered TRE median / p95 per group, targets, flags."""
    parts, all_met = [], True
    for label, g, kind in _groups(tre):
        if len(g):
            v = g[f"{kind}_after"].to_numpy(float)
            med, p95 = np.median(v), np.percentile(v, 95)
            all_met &= bool(med < TARGET_MEDIAN_MM and p95 < TARGET_P95_MM)
            parts.append(f"{label.split(' (')[0]} {med:.2f}/{p95:.2f}")
    n = max(len(regs.table), 1)
    return (f"{name:10s} {seconds_per_image(elapsed, workers, n):5.2f} s/image {cpu / n:5.2f} CPU s/image  "
            + "  ".join(parts) + f"  targets {'met' if all_met else 'NOT MET'}  "
            f"flagged {regs.summary()['n_flagged']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-patients", type=int, default=20)
    ap.add_argument("--preset", default="default", choices=preset_names())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="patients registered in parallel")
    ap.add_argument("--timepoints", default="baseline,presurgery,followup")
    ap.add_argument("--no-bspline", action="store_true", help="rigid + affine only for CT -> CT")
    ap.add_argument("--candidates", default="default",
                    help=f"comma-separated settings to compare, of {', '.join(CANDIDATES)}")
    ap.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "dlm_registration_benchmark"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="synthetic config override, e.g. geometry.motion.breathing_mm=8 (repeatable)")
    ap.add_argument("--csv", help="write the per-lesion TRE table here (a candidate column when several)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown or not names:
        ap.error(f"unknown candidate(s) {unknown}: choose from {', '.join(CANDIDATES)}")

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
    channels = [(t, m) for t in args.timepoints.split(",") for m in schema.MODALITIES]
    summary, tables = [], []
    for name in names:
        config = dataclasses.replace(RegistrationConfig(**CANDIDATES[name]), workers=args.workers,
                                     bspline=not args.no_bspline)
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        t0, c0 = time.perf_counter(), cpu_seconds()
        regs = register_cohort(cohort, config, cache, channels=channels, workers=args.workers, progress=False,
                               log=lambda m: None)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        tre = tre_table(cohort, regs)
        print(f"registration benchmark: candidate {name}, preset {args.preset}, seed {args.seed}, "
              f"{args.n_patients} patients, timepoints {args.timepoints}, "
              f"B-spline {'off' if args.no_bspline else 'on'}" + (f", overrides {args.set}" if args.set else ""))
        print(report(tre, regs, elapsed, args.workers, cpu), flush=True)
        summary.append(comparison_line(name, tre, regs, elapsed, args.workers, cpu))
        tables.append(tre.assign(candidate=name))
    if len(names) > 1:
        print(f"\ncandidates (registered TRE median/p95 mm; targets: median < {TARGET_MEDIAN_MM:g}, "
              f"p95 < {TARGET_P95_MM:g} for every pair; s/image = wall x workers / images; CPU s/image: "
              f"this process and its workers)")
        print("\n".join(summary))
    if args.csv:
        out = pd.concat(tables, ignore_index=True)
        (out if len(names) > 1 else out.drop(columns="candidate")).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
