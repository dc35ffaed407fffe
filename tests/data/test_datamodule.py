"""Augmentation is a function of (seed, epoch, lesion): the same whatever order lesions are
drawn in or how many loader workers draw them, so a resumed run sees the patches of an
uninterrupted one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dlm_ml.data.datamodule import EpochSeededDataset, PCRDataModule, lesion_records
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.transforms import evaluation_transforms, training_transforms
from tests.data.patch_sets import random_patch_set


@pytest.fixture(scope="module")
def patches() -> PatchSet:
    return random_patch_set(12)


def _dataset(patches, seed=3):
    return EpochSeededDataset(lesion_records(patches, np.arange(len(patches))), training_transforms(), seed=seed)


def test_same_seed_epoch_and_index_give_the_same_patch_in_any_order(patches):
    first, second = _dataset(patches), _dataset(patches)
    forward = [first[i]["image"] for i in range(len(first))]
    backward = {i: second[i]["image"] for i in reversed(range(len(second)))}
    for i, image in enumerate(forward):
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32 and image.shape == (2, 8, 8, 8)
        assert torch.equal(image, backward[i])
    assert not np.array_equal(forward[0].numpy(), patches.image[0])  # augmentation did something


def test_epoch_and_seed_change_the_augmentation(patches):
    ds = _dataset(patches)
    epoch0 = torch.stack([ds[i]["image"] for i in range(len(ds))])
    ds.epoch = 1
    epoch1 = torch.stack([ds[i]["image"] for i in range(len(ds))])
    other_seed = torch.stack([_dataset(patches, seed=4)[i]["image"] for i in range(len(ds))])
    assert not torch.equal(epoch0, epoch1) and not torch.equal(epoch0, other_seed)
    ds.epoch = 0
    assert torch.equal(torch.stack([ds[i]["image"] for i in range(len(ds))]), epoch0)


def test_loader_workers_do_not_change_the_batches(patches):
    folds = pd.DataFrame({"patient_id": sorted(patches.lesions.patient_id.unique())})
    folds["fold"] = np.arange(len(folds)) % 2

    def batches(workers: int) -> list[torch.Tensor]:
        dm = PCRDataModule(patches, folds, fold=0, batch_size=4, num_workers=workers, seed=7, val_fraction=0.3)
        dm.setup("fit")
        loader = dm.train_dataloader()
        out = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            out += [b["image"] for b in loader]
        return out

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) and all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_evaluation_transforms_only_convert(patches):
    record = lesion_records(patches, np.array([5]))[0]
    out = evaluation_transforms()(record)
    assert type(out["image"]) is torch.Tensor and np.array_equal(out["image"].numpy(), patches.image[5])


@pytest.mark.parametrize("batch_size", [2, 4, 5])
def test_no_training_batch_of_a_single_lesion(patches, batch_size):
    """Batch normalisation cannot train on one sample: a last batch of one lesion is skipped,
    any other remainder is kept, and over epochs every fit lesion is drawn."""
    folds = pd.DataFrame({"patient_id": sorted(patches.lesions.patient_id.unique())})
    folds["fold"] = np.arange(len(folds)) % 3
    dm = PCRDataModule(patches, folds, fold=0, batch_size=batch_size, seed=7, val_fraction=0.2)
    dm.setup("fit")
    n_fit = len(dm.fit_set)
    assert n_fit == 6  # with batch_size 5 the last batch would hold one lesion
    loader, seen = dm.train_dataloader(), set()
    for epoch in range(8):
        loader.sampler.set_epoch(epoch)
        sizes = []
        for batch in loader:
            sizes.append(len(batch["index"]))
            seen.update(batch["index"].tolist())
        assert min(sizes) >= 2 and sum(sizes) == n_fit - (1 if n_fit % batch_size == 1 else 0)
    assert seen == set(dm.fit_rows.tolist())
