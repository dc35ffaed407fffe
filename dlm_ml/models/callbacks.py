"""Callbacks the training loop always adds: they make runs reproducible and resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from dlm_ml.utils.atomic import atomic_path

#: What a full training-state checkpoint holds that a weights-only one does not.
_TRAINING_STATE_KEYS = ("state_dict", "optimizer_states", "loops", "epoch", "callbacks")


class SeedEachEpoch(pl.Callback):
    """Reseed torch's global RNG (dropout) from (seed, epoch) at every training epoch, so an
    epoch's randomness does not depend on what ran before it — e.g. on a resume.

    Reseeded as the epoch's first batch starts, not as the epoch starts: the loader's iterator
    draws its worker base seed from the global generator when it is made, which an uninterrupted
    epoch does after ``on_train_epoch_start`` and a resumed one before it. By the first batch
    both have made it.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:
            torch.manual_seed(self.seed * 100_003 + trainer.current_epoch)


class ResumeCheckpoint(Checkpoint):
    """The full training state (weights, optimizer, scheduler, loop counters, the state of early
    stopping and of the best checkpoint) after every finished epoch, as ``path``: what an
    interrupted fold continues from.

    Written at the end of each training epoch, after validation and after the callbacks that
    monitor it (Lightning runs checkpoint callbacks last), so the epoch's early-stopping verdict
    is in it. Lightning's own ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes
    ``last.ckpt`` only when training ends, which resumes nothing. The file is written under a
    temporary name in its own folder, fsynced and renamed: a reader sees the previous epoch's
    complete file or this one's, never a partial one (Lightning's own writer copies from a
    temporary folder that may lie on another file system).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._training_stopped = False
        self._resumed_stopped = False

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        # Early stopping decided at this epoch end: a fold resumed from this file trains no further.
        self._training_stopped = bool(trainer.should_stop)
        if not trainer.is_global_zero:
            # In a data-parallel fit only the first process writes; the others take part in
            # the checkpoint's collective steps (its barrier) and write nothing.
            trainer.save_checkpoint(self.path, weights_only=False)
            return
        with atomic_path(self.path) as tmp:
            # The full training state (optimizer, loops, callbacks): weights alone resume nothing.
            trainer.save_checkpoint(tmp, weights_only=False)
        _fsync_folder(self.path.parent)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resumed_stopped:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"training_stopped": self._training_stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed_stopped = bool(state_dict.get("training_stopped", False))


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a crash after it cannot bring back the old name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resume_checkpoint(dirpath: str | Path) -> ResumeCheckpoint:
    """The :class:`ResumeCheckpoint` writing ``last.ckpt`` in ``dirpath``."""
    return ResumeCheckpoint(Path(dirpath) / "last.ckpt")


def epochs_in_resume_checkpoint(path: str | Path) -> int:
    """How many epochs the training state in ``path`` has finished (``epoch`` + 1).

    Raises :class:`ValueError` naming ``path`` when it cannot be loaded (truncated, not a
    checkpoint) or is not a full training state: such a file must not be resumed from.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise ValueError(f"{path} cannot be loaded: {type(error).__name__}: {error}") from error
    missing = [key for key in _TRAINING_STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"{path} is not a full training state (it lacks {missing})")
    return int(state["epoch"]) + 1
