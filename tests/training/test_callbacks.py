"""The best checkpoint is found by what a callback does, not by where it is listed; the
determinism the run records is the one training runs with."""

from __future__ import annotations

import io

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from dlm_ml.models.callbacks import resume_checkpoint
from dlm_ml.training.cross_validation import best_checkpoint, build_callbacks, progress_bar_wanted
from dlm_ml.training.determinism import seed_everything

CALLBACKS = {
    "early_stopping": {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val_loss"},
    "model_checkpoint": {"_target_": "pytorch_lightning.callbacks.ModelCheckpoint", "monitor": "val_loss",
                         "filename": "best"},
}


@pytest.mark.parametrize("order", [["early_stopping", "model_checkpoint"], ["model_checkpoint", "early_stopping"]])
def test_best_checkpoint_whatever_the_order(tmp_path, order):
    built = build_callbacks(OmegaConf.create({k: CALLBACKS[k] for k in order}), tmp_path)
    assert list(built) == order
    best = best_checkpoint({"resume": resume_checkpoint(tmp_path / "resume"), **built})
    assert best is built["model_checkpoint"] and isinstance(best, ModelCheckpoint)
    assert best.dirpath == str(tmp_path / "checkpoints")  # checkpointing callbacks write into the fold
    assert isinstance(built["early_stopping"], EarlyStopping)


def test_no_best_checkpoint_and_ambiguous_ones(tmp_path):
    assert best_checkpoint({"resume": resume_checkpoint(tmp_path)}) is None
    two = {"a": ModelCheckpoint(dirpath=str(tmp_path), monitor="val_loss"),
           "b": ModelCheckpoint(dirpath=str(tmp_path), monitor="val_auroc", mode="max")}
    with pytest.raises(ValueError, match=r"\['a', 'b'\] all keep a best checkpoint"):
        best_checkpoint(two)


@pytest.mark.parametrize("deterministic", [True, False, "warn"])
def test_recorded_determinism_is_what_the_trainer_runs_with(deterministic):
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        recorded = seed_everything(0, deterministic)
        pl.Trainer(deterministic=deterministic, accelerator="cpu", logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False)
        assert recorded == torch.are_deterministic_algorithms_enabled() == bool(deterministic)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal():
    assert progress_bar_wanted(True, _Terminal())
    assert not progress_bar_wanted(True, io.StringIO())  # a pipe or a log file
    assert not progress_bar_wanted(False, _Terminal())
