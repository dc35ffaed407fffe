"""``dlm-import``: build a dlm_ml cohort from a folder of DICOM studies (see docs/importing.md).

Usage::

    dlm-import INPUT --mapping studies.csv --out COHORT [--lesions lesions.csv] [--readings readings.csv]
               [--name NAME] [--site SITE] [--adc-source scanner|computed] [--adc-min-b 0]
               [--adc-weighting signal|signal_squared|none] [--force] [--no-progress]

Exit status 0 when the cohort was written, 1 when there were problems (all listed at once).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dlm_ml.data.imaging import adc as adc_fit
from dlm_ml.data.imaging.masks import DIAMETER_METHODS
from dlm_ml.data.importing import ADC_SOURCES, ImportRequest, Options, import_cohort


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlm-import",
        description="Build a dlm_ml cohort from a folder of DICOM studies and a mapping CSV (see docs/importing.md).",
    )
    p.add_argument("input", type=Path, help="folder of DICOM studies (any nesting)")
    p.add_argument("--mapping", type=Path, required=True,
                   help="CSV: patient_id, timepoint, study_uid | study_path, ...")
    p.add_argument("--out", type=Path, required=True, help="cohort folder to write (created)")
    p.add_argument("--lesions", type=Path, help="optional lesions CSV (coordinates or masks, outcomes)")
    p.add_argument("--readings", type=Path, help="optional readings CSV")
    p.add_argument("--name", help="cohort name (default: the output folder's name)")
    p.add_argument("--cohort-version", default="1", help="cohort version written to cohort.yaml")
    p.add_argument("--description", default="", help="free description for cohort.yaml")
    p.add_argument("--site", default="site1", help="site label for patients without a site in the mapping")
    p.add_argument("--adc-source", choices=ADC_SOURCES, default="scanner",
                   help="when both a scanner ADC map and multi-b DWI exist, which to use (default scanner)")
    p.add_argument("--adc-min-b", type=float, default=0.0,
                   help="leave b-values below this out of computed ADC (s/mm2; 100-200 removes perfusion)")
    p.add_argument("--adc-weighting", choices=adc_fit.WEIGHTINGS, default=adc_fit.DEFAULT_WEIGHTING)
    p.add_argument("--adc-noise-floor", type=float, default=None, help="signal noise floor (default: estimated)")
    p.add_argument("--diameter-method", choices=DIAMETER_METHODS, default="equivalent_sphere")
    p.add_argument("--force", action="store_true", help="re-import finished studies too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dlm-import``; returns the exit status (0 ok, 1 problems)."""
    args = build_parser().parse_args(argv)
    request = ImportRequest(
        input_dir=args.input, mapping=args.mapping, out=args.out, lesions=args.lesions, readings=args.readings,
        name=args.name, cohort_version=args.cohort_version, description=args.description, site=args.site,
        options=Options(args.adc_source, args.adc_min_b, args.adc_weighting, args.adc_noise_floor),
        diameter_method=args.diameter_method, force=args.force, progress=not args.no_progress)
    result = import_cohort(request)
    if result.problems:
        print(f"dlm-import: {len(result.problems)} problem(s):", file=sys.stderr)
        for p in result.problems:
            print("  - " + p.replace("\n", "\n    "), file=sys.stderr)
        if result.started:
            print(f"dlm-import: finished studies are kept in {args.out} and skipped on re-run; "
                  "tables are written once every study imports", file=sys.stderr)
        return 1
    print(f"dlm-import: {result.n_imported} imported, {len(result.status) - result.n_imported} already done; "
          f"cohort written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
