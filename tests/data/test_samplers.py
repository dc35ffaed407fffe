"""The training batches of a data-parallel fit: each step, the processes' parts together are the
single-process batch, every lesion once, nothing padded."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from dlm_ml.data.datamodule import PCRDataModule
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.samplers import RankSplitBatchSampler
from tests.data.patch_sets import random_patch_set


@pytest.fixture(scope="module")
def patches() -> PatchSet:
    return random_patch_set(20)


class Permutation(torch.utils.data.Sampler):
    """A fixed order with ``set_epoch`` that reshuffles, like the datamodule's sampler."""

    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


def _ranks(n: int, batch_size: int, world_size: int, epoch: int = 0) -> list[list[list[int]]]:
    samplers = [RankSplitBatchSampler(Permutation(n), batch_size, rank, world_size) for rank in range(world_size)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(s) for s in samplers]


@pytest.mark.parametrize(("n", "batch_size", "world_size"), [(23, 7, 2), (24, 8, 3), (17, 4, 4), (30, 7, 1),
                                                            (9, 4, 2), (10, 3, 3)])
def test_rank_parts_make_up_the_single_process_batch(n, batch_size, world_size):
    single = list(RankSplitBatchSampler(Permutation(n), batch_size))
    per_rank = _ranks(n, batch_size, world_size)
    assert len({len(batches) for batches in per_rank}) == 1, "every process takes the same number of steps"
    assert len(per_rank[0]) == len(RankSplitBatchSampler(Permutation(n), batch_size, 0, world_size))
    for step, batch in enumerate(single):
        parts = [batches[step] for batches in per_rank]
        assert all(parts), f"step {step}: a process without samples"
        assert [i for part in parts for i in part] == batch
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert len(seen) == len(set(seen)), "a sample repeated (padding)"


def test_single_process_drops_only_a_lone_last_sample():
    assert [len(b) for b in RankSplitBatchSampler(Permutation(17), 8)] == [8, 8]
    assert [len(b) for b in RankSplitBatchSampler(Permutation(18), 8)] == [8, 8, 2]
    assert len(RankSplitBatchSampler(Permutation(17), 8)) == 2
    # two processes drop what one drops: a last global batch of one
    assert [len(b) for b in RankSplitBatchSampler(Permutation(18), 8, 1, 2)] == [4, 4, 1]


def test_last_batch_smaller_than_the_processes_is_dropped():
    per_rank = _ranks(18, 8, 4)  # last global batch of 2 cannot feed 4 processes
    assert [[len(b) for b in batches] for batches in per_rank] == [[2, 2]] * 4


def test_epoch_reaches_the_order():
    assert _ranks(20, 6, 2, epoch=0) != _ranks(20, 6, 2, epoch=1)


def test_refuses_impossible_splits():
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        RankSplitBatchSampler(Permutation(10), 3, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        RankSplitBatchSampler(Permutation(10), 3, 2, 2)


def test_datamodule_gives_each_process_its_part_of_the_single_process_batches(patches):
    folds = pd.DataFrame({"patient_id": sorted(patches.lesions.patient_id.unique())})
    folds["fold"] = np.arange(len(folds)) % 2

    def indices(world_size: int, rank: int) -> list[list[int]]:
        dm = PCRDataModule(patches, folds, fold=0, batch_size=3, seed=7, val_fraction=0.2)
        dm.setup("fit")
        if world_size > 1:
            dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
        loader = dm.train_dataloader()
        _set_sampler_epoch(loader, 1)  # as Lightning does before each epoch
        return [batch["index"].tolist() for batch in loader]

    single = indices(1, 0)
    parts = [indices(2, rank) for rank in (0, 1)]
    assert [a + b for a, b in zip(*parts, strict=True)] == single
