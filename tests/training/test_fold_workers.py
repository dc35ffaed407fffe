"""Folds trained several at once (``fold_workers``), each in its own process with its share of
torch's threads, predict what the one-process fold loop predicts with that many threads, to the last
bit: each fold seeds itself, and only the thread count (the order of float sums) moves a prediction."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.training.cross_validation import FOLD_THREADS_TAG, cross_validate
from dlm_ml.training.recorder import MemoryFoldRecorder
from dlm_ml.utils.timing import PARALLEL_FOLDS_STAGE, reset_stages, stage_rows


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[
            "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2", "trainer.max_epochs=2", "model=small_cnn",
            *overrides])


def _three_folds(patches) -> pd.DataFrame:
    patients = sorted(set(patches.lesions.patient_id))
    return pd.DataFrame({"patient_id": patients, "fold": [i % 3 for i in range(len(patients))]})


@pytest.mark.slow  # trains 3 folds twice, the second time in 2 spawned processes
def test_two_fold_workers_predict_what_one_process_does(patches, tmp_path):
    folds = _three_folds(patches)
    one_record, two_record = MemoryFoldRecorder(), MemoryFoldRecorder()
    threads = torch.get_num_threads()
    # what each of 2 workers gets: half this process's threads, at least one
    torch.set_num_threads(max(1, threads // 2))
    try:
        one = cross_validate(_cfg(), patches, folds, one_record, tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    reset_stages()
    two = cross_validate(_cfg(), patches, folds, two_record, tmp_path / "two", fold_workers=2)

    pd.testing.assert_frame_equal(one.predictions, two.predictions)  # bit-identical, every lesion once
    for a, b in zip(one.folds, two.folds, strict=True):
        assert a.fold == b.fold
        pd.testing.assert_frame_equal(a.validation, b.validation)
    # the records kept in memory came back from the workers, one per fold
    assert sorted(two_record.runs) == [0, 1, 2]
    assert {f: r.metrics["n_test_lesions"] for f, r in two_record.runs.items()} == \
        {f: r.metrics["n_test_lesions"] for f, r in one_record.runs.items()}
    assert [r["stage"] for r in stage_rows()] == [PARALLEL_FOLDS_STAGE]
    # each fold records the threads it had (the timing table's cores for the fold)
    assert {r.tags[FOLD_THREADS_TAG] for r in two_record.runs.values()} == {str(max(1, threads // 2))}
    assert all((tmp_path / "two" / f"fold_{k}" / "predictor").is_dir() for k in range(3))


def test_fold_workers_refused_with_a_data_parallel_trainer(patches, tmp_path):
    with pytest.raises(ValueError, match="fold_workers=2 with a data-parallel trainer"):
        cross_validate(_cfg("trainer=ddp_cpu"), patches, _three_folds(patches), MemoryFoldRecorder(), tmp_path,
                       fold_workers=2)
    assert not any(tmp_path.iterdir())  # refused before any fold started
