"""Measure reproducibility on the demo cohort and print the figures.

1. ``dlm-train experiment=demo`` (the original run), then ``dlm-reproduce`` of it:
   the largest absolute difference of out-of-fold P(pCR) between the two.
2. The same training killed with SIGTERM in the middle of fold ``--kill-fold``, once that fold
   has finished ``--kill-after-epochs`` epochs (read from its resume checkpoint), and continued
   with ``resume=true``: the epoch the fold resumed after, the largest absolute difference
   against the uninterrupted original, and the run's ``elapsed_s`` (both sessions together).
3. ``dlm-train`` pointed at a tracking server that does not answer: seconds until it stops
   (before any cohort or patch work).

    .venv/bin/python benchmarks/reproducibility.py --root /tmp/dlm_repro

Tiny settings (the resume measurement alone, a few minutes on a laptop)::

    .venv/bin/python benchmarks/reproducibility.py --root /tmp/dlm_repro_tiny --resume-only \
        data.synthetic.preset=tiny data.n_folds=3 model=small_cnn trainer.max_epochs=8

Everything (cohort, patch cache, MLflow store) is written under ``--root``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from dlm_ml.models.callbacks import epochs_in_resume_checkpoint

#: Fold-run tag (dlm_ml.training.cross_validation.RESUMED_AFTER_EPOCHS_TAG).
RESUMED_AFTER_EPOCHS_TAG = "dlm_ml.resumed_after_epochs"


def _train_runs(client: MlflowClient):
    exp = client.get_experiment_by_name("dlm_ml")
    return client.search_runs([exp.experiment_id], "tags.`dlm_ml.role` = 'train'",
                              order_by=["attributes.start_time ASC"])


def _predictions(client, run_id, dst):
    return pd.read_csv(client.download_artifacts(run_id, "predictions.csv", str(dst)),
                       dtype={"patient_id": str, "lesion_id": str})


def _max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    merged = a.merge(b, on=["patient_id", "lesion_id"], how="outer", indicator=True)
    if (merged["_merge"] != "both").any():
        return float("inf")
    return float((merged.prob_pcr_x - merged.prob_pcr_y).abs().max())


def _stop_mid_fold(proc: subprocess.Popen, log_dir: Path, before: set, fold: int, epochs: int) -> int:
    """SIGTERM ``proc`` once ``fold`` of its run has finished ``epochs`` epochs (its resume
    checkpoint, written atomically after every epoch, says how many); returns how many it had."""
    while proc.poll() is None:
        for d in set(log_dir.iterdir()) - before:
            last = d / f"fold_{fold}/resume/last.ckpt"
            if last.is_file() and (finished := epochs_in_resume_checkpoint(last)) >= epochs:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                return finished
        time.sleep(0.05)
    raise SystemExit(f"training ended before fold {fold} had finished {epochs} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("outputs/reproducibility"))
    parser.add_argument("--kill-fold", type=int, default=2)
    parser.add_argument("--kill-after-epochs", type=int, default=2,
                        help="stop the run once the fold has finished this many epochs")
    parser.add_argument("--resume-only", action="store_true",
                        help="measure the interrupted-and-resumed run only (no dlm-reproduce, no unreachable server)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training run")
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    uri = f"sqlite:///{root}/outputs/mlflow/mlflow.db"
    train = [sys.executable, "-m", "dlm_ml.train", "experiment=demo", f"paths.root_dir={root}", *args.overrides]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

    started = time.time()
    subprocess.run(train, cwd=root, env=env, check=True, **quiet)
    client = MlflowClient(uri)
    original = _train_runs(client)[-1]
    print(f"original run {original.info.run_id}: {time.time() - started:.0f} s")

    if not args.resume_only:
        subprocess.run([sys.executable, "-m", "dlm_ml.cli.reproduce", original.info.run_id, "--tracking-uri", uri],
                       cwd=root, env=env, check=True, **quiet)
        reproduced = client.search_runs([original.info.experiment_id],
                                        f"tags.`dlm_ml.reproduces` = '{original.info.run_id}'")[0]
        d_repro = _max_diff(_predictions(client, original.info.run_id, root / "a"),
                            _predictions(client, reproduced.info.run_id, root / "b"))
        print(f"reproduced run {reproduced.info.run_id}: max |Δ prob_pcr| vs original = {d_repro:.3g}")

    log_dir = root / "outputs/logs/demo/runs"
    before = set(log_dir.iterdir())
    proc = subprocess.Popen(train, cwd=root, env=env, **quiet)
    finished = _stop_mid_fold(proc, log_dir, before, args.kill_fold, args.kill_after_epochs)
    killed = _train_runs(client)[-1]
    status_after_kill = killed.info.status
    subprocess.run(train + ["resume=true"], cwd=root, env=env, check=True, **quiet)
    d_resume = _max_diff(_predictions(client, original.info.run_id, root / "c"),
                         _predictions(client, killed.info.run_id, root / "d"))
    children = client.search_runs([killed.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{killed.info.run_id}'")

    resumed_after = {int(c.data.tags["fold"]): c.data.tags.get(RESUMED_AFTER_EPOCHS_TAG, "reused") for c in children}
    print(f"interrupted run {killed.info.run_id}: SIGTERM in fold {args.kill_fold} after {finished} finished "
          f"epoch(s); status = {status_after_kill}; after resume = {client.get_run(killed.info.run_id).info.status}; "
          f"fold child runs = {sorted(resumed_after)}")
    print(f"resumed session, epochs each fold had finished before it (reused: fold finished earlier) = "
          f"{dict(sorted(resumed_after.items()))}")
    print(f"resumed vs uninterrupted: max |Δ prob_pcr| = {d_resume:.3g}; elapsed_s of the resumed run "
          f"(both sessions) = {client.get_run(killed.info.run_id).data.metrics['elapsed_s']:.0f} s")
    if resumed_after.get(args.kill_fold) in (None, "reused", "0") or d_resume != 0:
        raise SystemExit(f"fold {args.kill_fold} did not continue mid-fold to the uninterrupted predictions")
    if args.resume_only:
        print(f"total {time.time() - started:.0f} s")
        return

    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable_started = time.time()
    proc = subprocess.run(train + [f"logger.tracking_uri=http://127.0.0.1:{port}"], cwd=root, env=env, **quiet)
    print(f"unreachable tracking server: exit code {proc.returncode} after {time.time() - unreachable_started:.1f} s")
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
