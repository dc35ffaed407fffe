"""Seconds per stage and peak memory of the whole pipeline on synthetic cohorts of growing size.

For each ``--patients`` count: ``dlm-synth`` writes a synthetic cohort (stage ``synthesis``), then
``dlm-train experiment=demo`` with ``trainer.max_epochs=--epochs`` validates it, registers every
image, extracts the patches, trains the folds and evaluates against the readers. Each command
runs in its own child process, so its peak resident memory (the largest process of its tree:
``ru_maxrss``; pool workers are separate processes, not summed) is its own. The
seconds of validation, registration, patch extraction, the folds (summed as ``training``) and
evaluation come from the run's ``timings.csv`` (the line ``stage times: <path>`` dlm-train
prints); ``dlm-train other`` is the rest of its wall time (start-up, tracking, reports).

Growth with cohort size: per stage, the slope of log(seconds) against log(patients) (1: linear,
2: quadratic), least squares over the sizes; "linear or better" when it is at most 1 +
``--tolerance``. Fixed costs (start-up) flatten the slope at small sizes.

Usage::

    python benchmarks/scaling.py --patients 100 300 1000 --epochs 2 [--work-dir DIR] [--set key=value ...]
    python benchmarks/scaling.py --patients 20 40 --epochs 1        # a quick check that it runs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlm_ml.data.synthetic import cohort_folder_name
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.timing import PARALLEL_FOLDS_STAGE, TIMINGS_LINE_PREFIX, wall_seconds

#: The pipeline's stages in the order they run, as the table lists them.
STAGES = ("synthesis", "validation", "registration", "patch extraction", "training", "evaluation", "dlm-train other")


@dataclass
class Measured:
    """One child process: its wall seconds, peak resident memory (bytes, largest process of its
    tree), exit status and the log holding its stdout and stderr."""

    seconds: float
    peak_bytes: int
    returncode: int
    log: Path
    stages: dict[str, float] = field(default_factory=dict)


#: Runs ``argv[2:]`` and writes its peak RSS (KiB) to ``argv[1]``. Linux carries a process's peak RSS
#: across fork and exec, so a command started straight from this script would count this script's
#: own memory (pandas, numpy) as its peak; started from this small launcher it counts only the
#: launcher's few MiB. RUSAGE_CHILDREN holds the largest process among the command and the
#: children it waited for (pool workers one at a time: a maximum, not a sum).
PEAK_LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
                 "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
                 "sys.exit(rc)")


def run_measured(command: list[str], log: Path, env: dict | None = None) -> Measured:
    """Run ``command`` to its end with stdout and stderr in ``log``; wall time and peak RSS (bytes)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_file = log.with_suffix(".peak_kib")
    with open(log, "w") as out:
        started = time.perf_counter()
        returncode = subprocess.call([sys.executable, "-c", PEAK_LAUNCHER, str(peak_file), *command],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - started
    peak_kib = int(peak_file.read_text()) if peak_file.is_file() else 0
    return Measured(seconds, peak_kib * 1024, returncode, log)  # ru_maxrss is in KiB on Linux


def timings_path(log_text: str) -> Path | None:
    """The timing table a dlm-train run names on its ``stage times: <path>`` line (None: no such line)."""
    for line in log_text.splitlines():
        if TIMINGS_LINE_PREFIX in line:
            return Path(line.split(TIMINGS_LINE_PREFIX, 1)[1].strip())
    return None


def train_stages(timings: pd.DataFrame, wall_s: float) -> dict[str, float]:
    """Seconds per stage of a dlm-train run from its timing table (``stage, seconds, cores``): the
    ``fold k`` rows summed as ``training`` (folds trained several at once: the wall time of them
    all, their own row); ``dlm-train other`` is ``wall_s`` less every stage, each counted once.
    A synthesis the run did itself (no cohort yet) counts as ``synthesis``."""
    seconds = timings.groupby("stage", sort=False).seconds.sum()
    if PARALLEL_FOLDS_STAGE in seconds.index:
        out = {"training": float(seconds[PARALLEL_FOLDS_STAGE])}
    else:
        out = {"training": float(seconds[seconds.index.str.fullmatch(r"fold \d+")].sum())}
    for name in ("synthesis", "validation", "registration", "patch extraction", "evaluation"):
        if name in seconds.index:
            out[name] = float(seconds[name])
    out["dlm-train other"] = max(wall_s - wall_seconds(timings.to_dict("records")), 0.0)
    return out


def growth_exponent(sizes, values) -> float:
    """Slope b of log(value) = a + b log(size), least squares: value ∝ size**b. NaN with fewer than
    two distinct sizes or any value not positive (a stage that took no measurable time)."""
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    if len(np.unique(sizes)) < 2 or not (values > 0).all() or not (sizes > 0).all():
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def growth_verdict(exponent: float, tolerance: float) -> str:
    """"linear or better" when ``exponent`` ≤ 1 + ``tolerance``, else "worse than linear"."""
    if np.isnan(exponent):
        return "n/a"
    return "linear or better" if exponent <= 1.0 + tolerance else "worse than linear"


def measure_size(n_patients: int, args, work: Path) -> dict:
    """Synthesis and the dlm-train pipeline on ``n_patients`` patients: seconds per stage and peak memory."""
    root = work / f"n{n_patients}"
    cohort = root / "outputs" / "data" / cohort_folder_name(args.preset, n_patients, args.seed)
    bin_dir = Path(sys.executable).parent
    synth = [str(bin_dir / "dlm-synth"), str(cohort), "--preset", args.preset, "--n-patients", str(n_patients),
             "--seed", str(args.seed)]
    if cohort.exists():
        raise SystemExit(f"{cohort} exists: choose an empty --work-dir, the synthesis is part of what is timed")
    made = run_measured(synth, root / "synth.log")
    if made.returncode:
        raise SystemExit(f"dlm-synth failed ({made.returncode}), see {made.log}")
    train = [str(bin_dir / "dlm-train"), "experiment=demo", f"seed={args.seed}",
             f"data.synthetic.preset={args.preset!r}", f"data.synthetic.n_patients={n_patients}",
             f"paths.root_dir={root}", f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
             f"logger.run_name=scaling_n{n_patients}", *args.set]
    trained = run_measured(train, root / "train.log", env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if trained.returncode:
        raise SystemExit(f"dlm-train failed ({trained.returncode}), see {trained.log}")
    path = timings_path(trained.log.read_text())
    stages = {"synthesis": made.seconds}
    if path is not None and path.is_file():
        stages.update(train_stages(pd.read_csv(path), trained.seconds))
    else:  # a dlm-train without a timing table: only its whole wall time is known
        stages["dlm-train other"] = trained.seconds
    return {"patients": n_patients, "stages": stages, "synth_peak": made.peak_bytes, "train_peak": trained.peak_bytes,
            "train_wall": trained.seconds, "timings": path}


def report(results: list[dict], tolerance: float) -> pd.DataFrame:
    """Rows: each stage, the total, the peak memory of each command; columns: seconds (GiB for
    memory) per cohort size, the growth exponent and its verdict."""
    sizes = [r["patients"] for r in results]
    rows = []
    for name in STAGES:
        values = [r["stages"].get(name, np.nan) for r in results]
        if not np.isnan(values).all():
            rows.append((f"{name} (s)", values))
    rows.append(("total (s)", [sum(r["stages"].values()) for r in results]))
    rows.append(("peak memory dlm-synth (GiB)", [r["synth_peak"] / 2**30 for r in results]))
    rows.append(("peak memory dlm-train (GiB)", [r["train_peak"] / 2**30 for r in results]))
    table = pd.DataFrame({"measure": [name for name, _ in rows],
                          **{f"n={n}": [values[i] for _, values in rows] for i, n in enumerate(sizes)}})
    table["exponent"] = [growth_exponent(sizes, values) for _, values in rows]
    table["growth"] = [growth_verdict(b, tolerance) for b in table["exponent"]]
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--epochs", type=int, default=2, help="trainer.max_epochs of every fold")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tolerance", type=float, default=0.1, help="exponent above 1 still called linear")
    ap.add_argument("--set", nargs="*", default=[], help="further dlm-train overrides, e.g. trainer=gpu")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="where the cohorts, caches and runs go (default: a new temporary folder)")
    ap.add_argument("--csv", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    if len(set(args.patients)) < 2:
        ap.error("--patients needs at least two different sizes to measure growth")

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dlm_ml_scaling_"))
    print(f"pipeline on {args.patients} patients (preset {args.preset}, seed {args.seed}, {args.epochs} epoch(s) "
          f"per fold, cores {os.cpu_count()}), under {work}", flush=True)
    results = []
    for n in sorted(args.patients):
        results.append(measure_size(n, args, work))
        r = results[-1]
        print(f"  n={n}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
              + f"; peak dlm-synth {r['synth_peak'] / 2**30:.2f} GiB, dlm-train {r['train_peak'] / 2**30:.2f} GiB"
              + ("" if r["timings"] else " (no timings.csv: dlm-train's stages not split)"), flush=True)
    table = report(results, args.tolerance)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))
    print(f"growth exponent: slope of log(value) on log(patients); 'linear or better' up to {1 + args.tolerance:g}")
    if args.csv:
        atomic_write_csv(args.csv, table)


if __name__ == "__main__":
    main()
