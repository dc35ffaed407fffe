"""Seconds per lesion (and per image) of the radiomics features, cold and cached.

Reads the first ``--n-lesions`` labelled lesions of a cohort folder (default: the default
synthetic cohort ``outputs/data/synthetic_default_n100_seed42`` when it exists, else a ``tiny`` synthetic
cohort written under ``--work-dir``) and extracts their features twice into a fresh cache: the
first run computes them (cold), the second reads the cache. Images are used in their own
physical space (no registration: this measures the features, not the registration).

Usage::

    python benchmarks/radiomics_speed.py --n-lesions 10 --workers 2 [--cohort DIR] [--spacing-mm 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.radiomics import RadiomicsConfig, radiomics_features
from dlm_ml.data.synthetic import cohort_folder_name, generate_cohort, make_config

# the demo's cohort (dlm-train's default data.cohort_dir at seed 42)
DEFAULT_COHORT = Path("outputs/data") / cohort_folder_name("default", None, 42)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, default=None, help="cohort folder (default: see above)")
    ap.add_argument("--n-lesions", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--spacing-mm", type=float, default=RadiomicsConfig.spacing_mm)
    ap.add_argument("--ring-mm", type=float, default=RadiomicsConfig.ring_mm)
    ap.add_argument("--morphology", action="store_true", help="also the ROI's morphology (once per lesion)")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "dlm_ml_radiomics_speed")
    args = ap.parse_args()

    cohort_dir = args.cohort or DEFAULT_COHORT
    if args.cohort is None and not DEFAULT_COHORT.is_dir():
        tiny = make_config("tiny")
        cohort_dir = args.work_dir / cohort_folder_name(tiny.preset, tiny.n_patients, tiny.seed)
        if not cohort_dir.is_dir():
            print(f"writing a tiny synthetic cohort to {cohort_dir}")
            generate_cohort(cohort_dir, tiny, progress=False)
    cohort = load_cohort(cohort_dir)
    lesions = cohort.labelled_lesions().head(args.n_lesions)
    config = RadiomicsConfig(spacing_mm=args.spacing_mm, ring_mm=args.ring_mm, morphology=args.morphology)
    with tempfile.TemporaryDirectory(dir=args.work_dir if args.work_dir.is_dir() else None) as cache:
        cold = radiomics_features(cohort, lesions, config, cache, workers=args.workers, log=lambda m: None)
        started = time.perf_counter()
        warm = radiomics_features(cohort, lesions, config, cache, workers=args.workers, log=lambda m: None)
        cached_s = time.perf_counter() - started
    n_masks = int(lesions["mask_path"].notna().sum()) if "mask_path" in lesions else 0
    print(f"cohort {cohort_dir}: {len(lesions)} lesions ({n_masks} with a mask), {len(config.images)} images each, "
          f"regions {list(config.regions)}, spacing {config.spacing_mm:g} mm, {len(cold.features.columns) - 2} "
          f"columns, {args.workers} worker(s)")
    print(f"cold:   {cold.seconds_per_lesion:.2f} s per lesion, {cold.seconds_per_image:.2f} s per image")
    print(f"cached: {cached_s / max(len(lesions), 1) * 1000:.1f} ms per lesion (hit: {warm.from_cache})")


if __name__ == "__main__":
    main()
