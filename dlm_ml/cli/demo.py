"""`make demo`: the whole pipeline on the default synthetic cohort, on CPU, timed.

Runs ``dlm-train experiment=demo`` (synthetic cohort → patches → 5-fold training →
out-of-fold predictions → comparison with the simulated readers → MLflow) in a child
process, passing its output through, then prints the run's timing table (stage | seconds |
cores, one row per fold, the job's total wall time), the wall time and the peak memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from dlm_ml.utils.timing import TIMINGS_LINE_PREFIX, wall_seconds


def format_stage_table(table: pd.DataFrame, wall_s: float) -> str:
    """The timing table as printed: one line per stage (``stage, seconds, cores``), then the
    time no stage covers (start-up, tracking, assembling the fold ensemble) and the total wall
    time of the job, seconds to one decimal. Folds trained several at once have a row of their
    own (their wall time) besides each fold's row; "other" counts them once."""
    width = max([24, *(len(str(s)) + 2 for s in table.stage)])
    lines = [f"{'stage':<{width}}{'seconds':>9}{'cores':>7}"]
    lines += [f"{r.stage:<{width}}{r.seconds:>9.1f}{r.cores:>7d}" for r in table.itertuples()]
    other = wall_s - wall_seconds(table.to_dict("records"))
    lines.append(f"{'other (start-up, tracking)':<{width}}{other:>9.1f}{'':>7}")
    lines.append(f"{'total wall time':<{width}}{wall_s:>9.1f}{'':>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    started = time.time()
    timings: Path | None = None
    # The child's lines are passed through as they come; the one naming its timing table is read.
    with subprocess.Popen([sys.executable, "-m", "dlm_ml.train", "experiment=demo", *overrides],
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as child:
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith(TIMINGS_LINE_PREFIX):
                timings = Path(line[len(TIMINGS_LINE_PREFIX):].strip())
    elapsed = time.time() - started
    # ru_maxrss of waited-for descendants, in KiB on Linux: the largest single process.
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    if timings is not None and timings.is_file():
        print("\nTime by stage (cores: those the stage could use; a fold: its torch threads)")
        print(format_stage_table(pd.read_csv(timings), elapsed))
    print(f"demo finished with exit code {child.returncode}: wall time {elapsed:.0f} s "
          f"({elapsed / 60:.1f} min), peak memory {peak_gib:.2f} GiB")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
