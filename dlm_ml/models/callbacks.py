"""Callbacks the training loop always adds: they make runs reproducible and resumable."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint


class SeedEachEpoch(pl.Callback):
    """Reseed torch's global RNG (dropout) from (seed, epoch) at every training epoch, so an
    epoch's randomness does not depend on what ran before it — e.g. on a resume."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.manual_seed(self.seed * 100_003 + trainer.current_epoch)


def resume_checkpoint(dirpath: str | Path) -> ModelCheckpoint:
    """Full training state (weights, optimizer, scheduler, loops, callbacks) after every epoch,
    as ``last.ckpt`` in ``dirpath``: what an interrupted fold resumes from."""
    return ModelCheckpoint(dirpath=str(dirpath), filename="last", save_top_k=0, save_last=True,
                           save_weights_only=False, enable_version_counter=False)
