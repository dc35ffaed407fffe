"""dlm-synth: write a synthetic cohort (images, tables, hidden truth) from a preset and overrides."""

from __future__ import annotations

import argparse
import json
import sys
import time

from dlm_ml.data.cohort import schema
from dlm_ml.data.synthetic import (
    disk_usage,
    format_summary,
    generate_cohort,
    make_config,
    preset_descriptions,
    settable_keys,
)


def _parser() -> argparse.ArgumentParser:
    presets = preset_descriptions()
    epilog = "presets:\n" + "\n".join(f"  {name:<9} {about}" for name, about in presets.items()) + (
        "\n\nEvery generator setting is a dotted key (effects.adc_change, readers.n_readers, ...):"
        "\n  dlm-synth --list-keys [--preset P]   lists them with their types and values")
    parser = argparse.ArgumentParser(prog="dlm-synth", description="Generate a synthetic dlm_ml cohort.",
                                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", help="cohort folder to create")
    parser.add_argument("--preset", default="default", choices=list(presets), help="default: %(default)s")
    parser.add_argument("--n-patients", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. effects.adc_change=0.2 (repeatable)")
    parser.add_argument("--workers", type=int, help="processes (default: automatic; output is the same)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--list-keys", action="store_true",
                        help="print every settable key with its type and value (of --preset) and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_keys:
        for key, type_name, value in settable_keys(args.preset):
            print(f"{key:<45} {type_name:<28} {json.dumps(value)}")
        return 0
    if args.out_dir is None:
        parser.error("OUT_DIR is required (or --list-keys)")
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
    flags = {"n_patients": args.n_patients, "seed": args.seed, "n_workers": args.workers}
    dotlist = [*args.set, *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    try:
        config = make_config(args.preset, dotlist)
    except (KeyError, ValueError) as err:
        parser.error(str(err.args[0] if isinstance(err, KeyError) else err))
    start = time.perf_counter()
    try:
        out = generate_cohort(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    except FileExistsError as err:
        print(f"dlm-synth: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    summary = json.loads((out / schema.TRUTH_DIR / "summary.json").read_text())
    print(f"wrote {out} (preset {config.preset}, seed {config.seed}) in {elapsed:.1f} s, "
          f"{disk_usage(out) / 1e6:.1f} MB")
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
