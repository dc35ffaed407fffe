"""A fold folder another run wrote into is refused unless this run is resuming: two runs sharing an
output folder must not continue each other's training from its ``resume/last.ckpt``."""

from __future__ import annotations

import logging
import os

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.folds import DEVELOPMENT_ONLY, make_folds
from dlm_ml.training.cross_validation import FOLD_CLAIM_FILE, PREDICTOR_DIR, claim_fold_folder, cross_validate
from dlm_ml.training.recorder import MemoryFoldRecorder
from tests.training.conftest import N_PATIENTS

REFUSED = "output folder already used by another run"


def _cfg(max_epochs: int = 1):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            "data.n_folds=3", "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2", "trainer=cpu",
            f"trainer.max_epochs={max_epochs}", "data.datamodule.batch_size=8"])


def _one_test_fold(patches) -> pd.DataFrame:
    """Fold 0 (three patients) is the only one tested; the rest train it."""
    patients = sorted(set(patches.lesions.patient_id))
    return pd.DataFrame({"patient_id": patients, "fold": [0] * 3 + [DEVELOPMENT_ONLY] * (N_PATIENTS - 3)})


# What a run leaves in its fold folder: the resume checkpoint, the best-epoch checkpoints, the predictor.
LEFT_BY_ANOTHER_RUN = ["resume/last.ckpt", "checkpoints/epoch=0-step=3.ckpt", f"{PREDICTOR_DIR}/network.pt"]


@pytest.mark.parametrize("left", LEFT_BY_ANOTHER_RUN)
def test_a_run_not_resuming_refuses_a_fold_folder_another_run_wrote(patches, tmp_path, left):
    fold_dir = tmp_path / "fold_0"
    (fold_dir / left).parent.mkdir(parents=True)
    (fold_dir / left).write_text("another run's file")
    recorder = MemoryFoldRecorder()
    with pytest.raises(FileExistsError, match=REFUSED) as refused:
        cross_validate(_cfg(), patches, make_folds(patches.lesions, 3, seed=0), recorder, tmp_path, resuming=False)
    message = str(refused.value)
    assert str(fold_dir) in message and left.split("/")[0] in message and "resume=true" in message
    # refused before anything was trained or written
    assert sorted(p.relative_to(fold_dir).as_posix() for p in fold_dir.rglob("*") if p.is_file()) == [left]
    assert recorder.runs[0].metrics == {}


def test_the_first_run_claims_a_fold_folder_and_a_second_one_is_refused(tmp_path):
    fold_dir = tmp_path / "run" / "fold_2"
    claim_fold_folder(fold_dir, resuming=False)
    claim = (fold_dir / FOLD_CLAIM_FILE).read_text()
    assert f"process {os.getpid()}" in claim
    with pytest.raises(FileExistsError, match=REFUSED) as refused:
        claim_fold_folder(fold_dir, resuming=False)
    assert str(fold_dir) in str(refused.value) and f"claimed by process {os.getpid()}" in str(refused.value)
    # resuming trusts the folder and claims nothing
    claim_fold_folder(fold_dir, resuming=True)
    assert (fold_dir / FOLD_CLAIM_FILE).read_text() == claim
    assert [p.name for p in fold_dir.iterdir()] == [FOLD_CLAIM_FILE]


@pytest.mark.slow  # trains one fold of a small network
def test_a_resumed_run_continues_its_fold_folder_and_a_new_run_is_refused(patches, tmp_path, caplog):
    folds = _one_test_fold(patches)
    first = cross_validate(_cfg(), patches, folds, MemoryFoldRecorder(), tmp_path, resuming=False)
    last_ckpt = tmp_path / "fold_0" / "resume" / "last.ckpt"
    assert last_ckpt.is_file() and (tmp_path / "fold_0" / PREDICTOR_DIR).is_dir()
    with pytest.raises(FileExistsError, match=REFUSED):
        cross_validate(_cfg(), patches, folds, MemoryFoldRecorder(), tmp_path, resuming=False)
    with caplog.at_level(logging.INFO):
        resumed = cross_validate(_cfg(max_epochs=2), patches, folds, MemoryFoldRecorder(), tmp_path, resuming=True)
    # Lightning's own word that it restored the training state from the fold's checkpoint
    assert f"Restoring states from the checkpoint path at {last_ckpt}" in caplog.text
    assert list(resumed.predictions.columns) == list(first.predictions.columns)
    assert len(resumed.predictions) == len(first.predictions)
