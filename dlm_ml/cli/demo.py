"""`make demo`: the whole pipeline on the default synthetic cohort, on CPU, timed.

Runs ``dlm-train experiment=demo`` (synthetic cohort → patches → 5-fold training →
out-of-fold predictions → comparison with the simulated readers → MLflow) in a child
process, then prints the wall time and the peak memory of the job.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "dlm_ml.train", "experiment=demo", *overrides])
    elapsed = time.time() - started
    # ru_maxrss of waited-for descendants, in KiB on Linux: the largest single process.
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    print(f"demo finished with exit code {result.returncode}: wall time {elapsed:.0f} s "
          f"({elapsed / 60:.1f} min), peak memory {peak_gib:.2f} GiB")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
