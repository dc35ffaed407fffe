"""A fold interrupted in the middle continues from its last finished epoch and predicts exactly
what an uninterrupted fold predicts (on CPU): weights, optimizer, cosine schedule, early-stopping
and best-checkpoint state, and the per-epoch randomness all survive the resume. A resume
checkpoint that cannot be loaded is not trusted."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.folds import DEVELOPMENT_ONLY
from dlm_ml.models.callbacks import epochs_in_resume_checkpoint
from dlm_ml.training.cross_validation import RESUMED_AFTER_EPOCHS_TAG, cross_validate
from dlm_ml.training.recorder import MemoryFoldRecorder
from tests.training.conftest import N_PATIENTS

pytestmark = pytest.mark.slow  # trains a small network for a few epochs, several times

INTERRUPTION = "tests.training.test_resume_mid_fold.Interruption"


class Interrupted(Exception):
    """Stands for the job being stopped (a signal, a node lost) at a known point."""


class Interruption(pl.Callback):
    """Stops training as epoch ``epoch`` (0-based) starts, or, with ``epoch=-1``, once training
    has ended (before the fold predicts)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch:
            raise Interrupted(f"stopped in epoch {self.epoch}")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.epoch == -1:
            raise Interrupted("stopped after training")


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2", "trainer=cpu",
            "data.datamodule.batch_size=8", *overrides])


def _one_test_fold(patches) -> pd.DataFrame:
    patients = sorted(set(patches.lesions.patient_id))
    return pd.DataFrame({"patient_id": patients, "fold": [0] * 3 + [DEVELOPMENT_ONLY] * (N_PATIENTS - 3)})


def _run(cfg, patches, out_dir, resuming=False):
    recorder = MemoryFoldRecorder()
    result = cross_validate(cfg, patches, _one_test_fold(patches), recorder, out_dir, resuming=resuming)
    return result, recorder.runs[0]


def _interrupted_then_resumed(patches, tmp_path, stop_epoch: int, *overrides: str):
    out_dir = tmp_path / "interrupted"
    stopping = _cfg(*overrides, f"+callbacks.interruption._target_={INTERRUPTION}",
                    f"+callbacks.interruption.epoch={stop_epoch}")
    with pytest.raises(Interrupted):
        _run(stopping, patches, out_dir)
    return _run(_cfg(*overrides), patches, out_dir, resuming=True)


def _same_predictions(a, b) -> None:
    for name in ("predictions",):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    pd.testing.assert_frame_equal(a.folds[0].validation, b.folds[0].validation, check_exact=True)


@pytest.mark.parametrize("stop_epoch", [1, 4])
def test_a_fold_stopped_mid_training_resumes_from_its_last_epoch_and_predicts_as_if_never_stopped(
        patches, tmp_path, stop_epoch, caplog):
    # Cosine schedule over 6 epochs, dropout, augmentation, a best checkpoint and early stopping
    # that has not fired yet: everything that makes epoch k+1 depend on epochs 0..k.
    overrides = ["trainer.max_epochs=6"]
    uninterrupted, run_a = _run(_cfg(*overrides), patches, tmp_path / "uninterrupted")
    with caplog.at_level(logging.INFO, logger="dlm_ml.training"):
        resumed, run_b = _interrupted_then_resumed(patches, tmp_path, stop_epoch, *overrides)
    assert run_b.tags[RESUMED_AFTER_EPOCHS_TAG] == str(stop_epoch)  # epochs 0..stop_epoch-1 were kept
    assert f"after {stop_epoch} finished epoch(s)" in caplog.text
    _same_predictions(uninterrupted, resumed)
    assert run_a.metrics["epochs_run"] == run_b.metrics["epochs_run"]


def test_early_stopping_that_fired_before_the_interruption_is_not_undone(patches, tmp_path):
    # patience 1 stops long before 30 epochs; the job is stopped after training, before predicting
    overrides = ["trainer.max_epochs=30", "callbacks.early_stopping.patience=1"]
    uninterrupted, run_a = _run(_cfg(*overrides), patches, tmp_path / "uninterrupted")
    assert run_a.metrics["epochs_run"] < 30
    resumed, run_b = _interrupted_then_resumed(patches, tmp_path, -1, *overrides)
    assert run_b.metrics["epochs_run"] == run_a.metrics["epochs_run"]  # no epoch trained after the stop
    _same_predictions(uninterrupted, resumed)


def test_the_resume_checkpoint_is_written_after_every_epoch(patches, tmp_path):
    out_dir = tmp_path / "run"
    stopping = _cfg("trainer.max_epochs=6", f"+callbacks.interruption._target_={INTERRUPTION}",
                    "+callbacks.interruption.epoch=3")
    with pytest.raises(Interrupted):
        _run(stopping, patches, out_dir)
    last = out_dir / "fold_0" / "resume" / "last.ckpt"
    assert epochs_in_resume_checkpoint(last) == 3
    # nothing but the checkpoint in its folder: the temporary file was renamed, not left behind
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


def test_a_truncated_resume_checkpoint_is_not_trusted_and_the_fold_restarts(patches, tmp_path, caplog):
    overrides = ["trainer.max_epochs=4"]
    uninterrupted, _ = _run(_cfg(*overrides), patches, tmp_path / "uninterrupted")
    out_dir = tmp_path / "interrupted"
    stopping = _cfg(*overrides, f"+callbacks.interruption._target_={INTERRUPTION}", "+callbacks.interruption.epoch=2")
    with pytest.raises(Interrupted):
        _run(stopping, patches, out_dir)
    last = out_dir / "fold_0" / "resume" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a full disk or a copy cut short leaves
    with pytest.raises(ValueError, match="cannot be loaded"):
        epochs_in_resume_checkpoint(last)
    with caplog.at_level(logging.WARNING, logger="dlm_ml.training"):
        resumed, run = _run(_cfg(*overrides), patches, out_dir, resuming=True)
    assert "resume checkpoint not trusted, the fold restarts from epoch 0" in caplog.text and str(last) in caplog.text
    assert run.tags[RESUMED_AFTER_EPOCHS_TAG] == "0"
    _same_predictions(uninterrupted, resumed)
    assert epochs_in_resume_checkpoint(last) == 4  # the restarted fold wrote a good one


def test_a_weights_only_file_is_not_a_training_state(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a full training state"):
        epochs_in_resume_checkpoint(path)
