"""Training throughput with ``trainer=gpu``: samples per second, GPU utilisation, data-loader wait.

Trains one fold of the default synthetic cohort for a few epochs with the ``dlm-train``
configuration (``trainer=gpu``: bf16-mixed, channels-last; ``--compile`` adds torch.compile) and
prints, over the epochs after the first (which pays cuDNN autotuning and any compilation):

- samples/s: training lesions per second of training-loop time;
- GPU utilisation: mean of ``nvidia-smi``'s utilisation sampled every 0.2 s while training;
- data-loader wait: share of the loop spent waiting for the next batch (from the end of one
  step to the start of the next) rather than in the step (forward, backward, optimiser,
  synchronised with the GPU).

    python benchmarks/gpu_throughput.py                       # the default cohort (100 patients)
    python benchmarks/gpu_throughput.py --patients 1000       # a 1,000-patient cohort
    python benchmarks/gpu_throughput.py --model longitudinal --compile --num-workers 8
    python benchmarks/gpu_throughput.py --cpu --preset tiny --patients 12 --epochs 2   # check it without a GPU

``--patients`` above the default cohort's 100 repeats its patients under new ids (the patches
are the same; throughput depends on how many lesions there are, not which), so a 1,000-patient
cohort needs no hour of registration. Without a GPU and without ``--cpu`` it says so and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.train_inputs import training_inputs
from dlm_ml.data.folds import make_folds
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.models.build import build_network
from dlm_ml.training.cross_validation import split_trainer_config


class StepTimer(pl.Callback):
    """Seconds waiting for batches and seconds in training steps, per epoch after ``skip_epochs``."""

    def __init__(self, skip_epochs: int = 1):
        self.skip_epochs = skip_epochs
        self.wait = self.step = 0.0
        self.samples = 0
        self._mark: float | None = None

    def _sync(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._mark = self._sync()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = self._sync()
        if trainer.current_epoch >= self.skip_epochs:
            self.wait += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = self._sync()
        if trainer.current_epoch >= self.skip_epochs:
            self.step += now - self._mark
            self.samples += len(batch["label"])
        self._mark = now


class UtilisationSampler:
    """Mean GPU utilisation (%) from ``nvidia-smi`` sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.values = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", str(torch.cuda.current_device())], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.values.append(float(out.stdout.split()[0]))

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None


def enlarged(patches: PatchSet, n_patients: int) -> PatchSet:
    """``patches`` with its patients repeated under new ids until there are ``n_patients``."""
    patients = sorted(set(patches.lesions.patient_id))
    if n_patients <= len(patients):
        keep = patches.lesions.patient_id.isin(patients[:n_patients]).to_numpy()
        return replace(patches, image=patches.image[keep], present=patches.present[keep],
                       lesions=patches.lesions[keep].reset_index(drop=True))
    rows, tables = [], []
    for copy in range(-(-n_patients // len(patients))):
        for patient in patients[:n_patients - copy * len(patients)]:
            chosen = np.flatnonzero(patches.lesions.patient_id.to_numpy() == patient)
            rows.append(chosen)
            tables.append(patches.lesions.iloc[chosen].assign(patient_id=f"{patient}_r{copy}"))
    rows = np.concatenate(rows)
    return replace(patches, image=patches.image[rows], present=patches.present[rows],
                   lesions=pd.concat(tables, ignore_index=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--preset", default="default", help="synthetic cohort preset the patients come from")
    parser.add_argument("--epochs", type=int, default=4, help="epochs to train; the first is not measured")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (trainer=cpu), to check the script")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="paths.root_dir (cohort and patch cache)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA GPU is available: this benchmark measures trainer=gpu (use --cpu to check the script)",
              file=sys.stderr)
        return 1
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch is not measured")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.root_dir={args.root}", f"data.synthetic.preset={args.preset!r}", f"model={args.model}",
            f"trainer={'cpu' if args.cpu else 'gpu'}",
            f"data.datamodule.batch_size={args.batch_size}", f"data.datamodule.num_workers={args.num_workers}"])
    cohort, _ = prepare_cohort(cfg.data)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        patches = enlarged(training_inputs(cfg, cohort).patches, args.patients)
    folds = make_folds(patches.lesions, int(cfg.data.n_folds), int(cfg.seed))
    trainer_cfg, speed = split_trainer_config(cfg.trainer)
    speed = {"channels_last": bool(speed.get("channels_last")) and not args.no_channels_last,
             "compile_net": bool(speed.get("compile_net")) or args.compile}
    datamodule = hydra.utils.instantiate(cfg.data.datamodule)(patches=patches, folds=folds, fold=0)
    module = hydra.utils.instantiate(cfg.model.module)(
        net=build_network(cfg.model.net, 0), optimizer=hydra.utils.instantiate(cfg.model.optimizer),
        pos_weight=datamodule.pos_weight, **speed)
    timer = StepTimer(skip_epochs=1)
    trainer = hydra.utils.instantiate(trainer_cfg, max_epochs=args.epochs, callbacks=[timer], logger=False,
                                      enable_checkpointing=False, enable_progress_bar=False,
                                      default_root_dir=str(args.root / "outputs" / "benchmarks" / "gpu_throughput"))
    with UtilisationSampler() as gpu:
        trainer.fit(module, datamodule=datamodule)
    device = "CPU" if args.cpu else torch.cuda.get_device_name()
    loop = timer.wait + timer.step
    utilisation = "n/a" if gpu.mean is None else f"{gpu.mean:.0f} %"
    print(f"{device}, model={args.model}, {args.patients} patients ({len(datamodule.fit_rows)} fit lesions), "
          f"batch {args.batch_size}, {args.num_workers} loader workers, precision {trainer_cfg.precision}, "
          f"channels_last={speed['channels_last']}, compile={speed['compile_net']}")
    print(f"epochs 2-{args.epochs}: {timer.samples / loop:.1f} samples/s, GPU utilisation {utilisation}, "
          f"data-loader wait {timer.wait / loop:.1%} of the loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
