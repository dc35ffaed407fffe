"""dlm-reproduce RUN_ID: re-create a tracked training run, or say precisely why not.

Checks the run's code version, the code and config it used from outside the package (modules on
``PYTHONPATH``, ``hydra.searchpath`` folders, weights files) and its cohort against the present
(refusing, with the differences, when they differ unless ``--force``), re-runs it with the same
search path into a new run tagged ``dlm_ml.reproduces`` and prints the original and new metrics
side by side. Run it with the ``PYTHONPATH`` the original run had.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from dlm_ml.tracking.reproduce import DEFAULT_URI, RefusedError, reproduce


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlm-reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="MLflow parent run id of a dlm-train run")
    parser.add_argument("--tracking-uri", default=DEFAULT_URI,
                        help=f"tracking store holding the run (default: {DEFAULT_URI}, relative to this folder)")
    parser.add_argument("--force", action="store_true", help="re-run even when code, outside code or cohort differ")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer=gpu")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    try:
        result = reproduce(args.run_id, args.tracking_uri, force=args.force, extra_overrides=args.overrides)
    except RefusedError as err:
        print(err, file=sys.stderr)
        return 2
    with pd.option_context("display.float_format", "{:.6f}".format, "display.width", 120):
        print(result["comparison"].to_string(index=False))
    print(f"original run {args.run_id} → reproduced run {result['new_run_id']}; "
          f"max |Δ prob_pcr| over lesions = {result['max_abs_prediction_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
