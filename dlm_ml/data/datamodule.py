"""MONAI datasets and the LightningDataModule of one cross-validation fold.

The transforms they apply are in :mod:`dlm_ml.data.transforms`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from dlm_ml.data.covariates import CovariateEncoder, LesionCovariates
from dlm_ml.data.folds import fold_rows
from dlm_ml.data.patches import PatchSet
from dlm_ml.data.samplers import RankSplitBatchSampler
from dlm_ml.data.transforms import evaluation_transforms, plain_tensors, training_transforms


def lesion_records(patches: PatchSet, rows: np.ndarray, covariates: np.ndarray | None = None) -> list[dict]:
    """MONAI-style dictionaries, one per lesion.

    Keys: ``image`` float32 [C, D, H, W]; ``present`` bool [C] (False: the image is missing, its
    channel holds zeros and carries no information); ``covariates`` float32 [K] (encoded row of
    ``covariates`` [N_patches, K]; K = 0 without covariates); ``label`` float32 scalar (pcr);
    ``patient_id``, ``lesion_id`` strings; ``index`` row in ``patches``.
    """
    if covariates is None:
        covariates = np.zeros((len(patches), 0), dtype=np.float32)
    records = []
    for i in rows:
        lesion = patches.lesions.iloc[int(i)]
        records.append({
            "image": patches.image[i],
            "present": patches.present[i],
            "covariates": covariates[i],
            "label": np.float32(lesion.pcr),
            "patient_id": str(lesion.patient_id),
            "lesion_id": str(lesion.lesion_id),
            "index": int(i),
        })
    return records


class EpochSeededDataset(torch.utils.data.Dataset):
    """Lesion records whose random transforms are seeded by (seed, epoch, index).

    Augmentation then depends neither on the order items are drawn in, nor on the number
    of loader workers, nor on whether training was interrupted and resumed: epoch ``e`` of a
    resumed run sees exactly the augmented patches of an uninterrupted one. Each item reseeds
    ``transform`` (MONAI ``Randomizable.set_random_state``) before applying it.
    """

    def __init__(self, data: list[dict], transform: Compose, seed: int):
        self.data, self.transform = data, transform
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        self.transform.set_random_state(seed=item_seed(self.seed, self.epoch, index))
        with plain_tensors():
            return self.transform(self.data[index])


def item_seed(*parts: int) -> int:
    """A 32-bit seed drawn from the integers ``parts`` (e.g. seed, epoch, index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class EpochPermutationSampler(torch.utils.data.Sampler):
    """Shuffles with a permutation drawn from (seed, epoch); Lightning calls ``set_epoch``
    before each training epoch, which also tells the dataset the epoch for augmentation."""

    def __init__(self, dataset: EpochSeededDataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(rng.permutation(len(self.dataset)).tolist())

    def __len__(self) -> int:
        return len(self.dataset)


class PCRDataModule(pl.LightningDataModule):
    """Data of one fold: training patients split into fit/validation, the fold's patients as test.

    Parameters
    ----------
    patches : PatchSet of the whole cohort.
    folds : DataFrame ``patient_id, fold``.
    fold : int, the test fold (>= 0). Patients of other folds, including development-only ones
        (fold -1), are the training side, split into fit and validation.
    val_fraction : float, share of training patients held out for early stopping, checkpoint
        selection and thresholds.
    seed : int, seeds the validation split and the augmentation.
    covariates : raw clinical/lesion covariates of every lesion of ``patches``; their encoder is
        fitted on this fold's fit lesions only (``covariate_encoder``).
    """

    def __init__(self, patches: PatchSet, folds: pd.DataFrame, fold: int, batch_size: int = 32,
                 num_workers: int = 0, val_fraction: float = 0.2, seed: int = 0,
                 augmentation: dict | None = None, covariates: LesionCovariates | None = None):
        super().__init__()
        self.patches, self.folds, self.fold = patches, folds, int(fold)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.seed = int(seed)
        self.fit_rows, self.val_rows, self.test_rows = fold_rows(patches.lesions, folds, self.fold, val_fraction, seed)
        self.augmentation = dict(augmentation or {})
        self.covariate_encoder, self.covariates = None, None
        if covariates is not None and covariates.config:
            covariates.check_aligned(patches.lesions)
            # Fitted on the fit lesions only: validation and test values never shape the encoding.
            self.covariate_encoder = CovariateEncoder(covariates.config).fit(covariates.table.iloc[self.fit_rows])
            self.covariates = self.covariate_encoder.transform(covariates.table)

    @property
    def n_covariates(self) -> int:
        """K, the length of each lesion's encoded covariate vector (0 without covariates)."""
        return 0 if self.covariates is None else int(self.covariates.shape[1])

    @property
    def pos_weight(self) -> float:
        """n_negative / n_positive among fit lesions, for class-weighted BCE."""
        y = self.patches.lesions.pcr.to_numpy()[self.fit_rows]
        return float((y == 0).sum() / max((y == 1).sum(), 1))

    def setup(self, stage: str | None = None) -> None:
        self.fit_set = EpochSeededDataset(lesion_records(self.patches, self.fit_rows, self.covariates),
                                          training_transforms(**self.augmentation,
                                                              spatial_size=self.patches.image.shape[2:]),
                                          seed=self.seed * 1000 + self.fold)
        eval_tf = evaluation_transforms()
        self.val_set = Dataset(lesion_records(self.patches, self.val_rows, self.covariates), transform=eval_tf)
        self.test_set = Dataset(lesion_records(self.patches, self.test_rows, self.covariates), transform=eval_tf)

    def _loader(self, dataset, sampler=None, drop_last: bool = False) -> DataLoader:
        # Workers are not persistent: each epoch's workers get the dataset's current epoch.
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=False, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        """This process's part of each global batch of ``batch_size`` lesions (all of it in a
        single-process fit): with several processes the union of their batches of a step is the
        single-process batch (:class:`~dlm_ml.data.samplers.RankSplitBatchSampler`)."""
        # A last training batch of one lesion is skipped: batch normalisation cannot train on a
        # single sample. The permutation changes every epoch, so no lesion is always left out.
        order = EpochPermutationSampler(self.fit_set, seed=self.seed * 1000 + self.fold)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            batches = RankSplitBatchSampler(order, self.batch_size, rank=trainer.global_rank,
                                            world_size=trainer.world_size)
            return DataLoader(self.fit_set, batch_sampler=batches, num_workers=self.num_workers,
                              persistent_workers=False)
        lone_last = len(self.fit_set) % self.batch_size == 1 and len(self.fit_set) > 1
        return self._loader(self.fit_set, order, drop_last=lone_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> list[DataLoader]:
        """Validation (for thresholds) and test loaders, in that order."""
        return [self._loader(self.val_set), self._loader(self.test_set)]
