"""MONAI dictionary transforms of lesion patches: augmentation for training folds, type
conversion for every fold.

Every piece takes explicit ``keys`` (the dictionary entries it changes) and returns a *list*
of transforms, so that :func:`training_transforms` is one flat :class:`~monai.transforms.Compose`.
Flatness matters for reproducibility: ``Compose.set_random_state(seed)`` hands each of its
random transforms a seed drawn in list order, so a nested Compose would change every
augmentation drawn for a given seed.

The patches these transforms see are float32 arrays ``[C, D, H, W]`` (channels = (timepoint,
modality), spatial axes on the isotropic patch grid, intensities normalised to about [-1, 1],
see :class:`dlm_ml.data.patches.Normalisation`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
)
from monai.transforms.transform import MapTransform

IMAGE_KEYS: tuple[str, ...] = ("image",)
#: The entry holding one bool per channel: False where the (timepoint, modality) image is missing.
PRESENT_KEY = "present"


class MaskAbsentd(MapTransform):
    """Zero every channel of ``keys`` whose ``present_key`` flag is False.

    Missing images are zeros when patches are cut; intensity noise and affine border filling
    would otherwise put values there, and a model could learn from the noise of an image that does
    not exist. Runs last, after every augmentation.
    """

    def __init__(self, keys: Sequence[str] = IMAGE_KEYS, present_key: str = PRESENT_KEY):
        super().__init__(list(keys))
        self.present_key = present_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        present = torch.as_tensor(np.asarray(d[self.present_key], dtype=bool))
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            mask = present.reshape(-1, *([1] * (image.ndim - 1))).to(image.dtype)
            d[key] = image * mask
        return d


def as_float_tensor(keys: Sequence[str] = IMAGE_KEYS) -> list[MapTransform]:
    """Plain float32 tensors, no MONAI metadata: spatial transforms return MetaTensors, and
    plain tensors collate without metadata clashes."""
    return [EnsureTyped(keys=list(keys), dtype=np.float32, track_meta=False)]


def random_flips(keys: Sequence[str] = IMAGE_KEYS, prob: float = 0.5) -> list[MapTransform]:
    """Flip each of the three spatial axes independently with probability ``prob``: a lesion's
    orientation carries no information about its response."""
    return [RandFlipd(keys=list(keys), prob=prob, spatial_axis=axis) for axis in (0, 1, 2)]


def random_affine(keys: Sequence[str] = IMAGE_KEYS, prob: float = 0.5, rotate_deg: float = 10.0,
                  scale: float = 0.1, spatial_size: Sequence[int] | None = None) -> list[MapTransform]:
    """With probability ``prob``, rotate about the patch centre by up to ``rotate_deg`` degrees
    about each axis and scale each axis by a factor in [1 - scale, 1 + scale]; border values
    fill what enters the patch. ``spatial_size`` (D, H, W voxels; every patch's, when known)
    lets the sampling grid be built once and reused: the same output, a fifth less time."""
    rad = math.radians(rotate_deg)
    cache = {"cache_grid": True, "spatial_size": tuple(int(v) for v in spatial_size)} if spatial_size else {}
    return [RandAffined(keys=list(keys), prob=prob, rotate_range=(rad, rad, rad), scale_range=(scale, scale, scale),
                        padding_mode="border", **cache)]


def intensity_jitter(keys: Sequence[str] = IMAGE_KEYS, scale: float = 0.05,
                     noise_std: float = 0.05) -> list[MapTransform]:
    """Each with probability 0.5: multiply intensities by a factor in [1 - scale, 1 + scale],
    then add Gaussian noise of standard deviation ``noise_std`` (normalised units)."""
    return [RandScaleIntensityd(keys=list(keys), factors=scale, prob=0.5),
            RandGaussianNoised(keys=list(keys), prob=0.5, std=noise_std)]


def training_transforms(flip_prob: float = 0.5, affine_prob: float = 0.5, rotate_deg: float = 10.0,
                        scale: float = 0.1, noise_std: float = 0.05, intensity_scale: float = 0.05,
                        keys: Sequence[str] = IMAGE_KEYS, spatial_size: Sequence[int] | None = None) -> Compose:
    """Augmentation for training folds only: flips, a small affine about the lesion centre,
    intensity jitter; ``keys`` entries come out as float32 tensors of the same shape.
    ``spatial_size``: the patches' (D, H, W), when all share it (see :func:`random_affine`).
    Apply it under :func:`plain_tensors`: the same values, a quarter less time."""
    return Compose([
        *as_float_tensor(keys),
        *random_flips(keys, flip_prob),
        *random_affine(keys, affine_prob, rotate_deg, scale, spatial_size),
        *intensity_jitter(keys, intensity_scale, noise_std),
        *as_float_tensor(keys),
        MaskAbsentd(keys),
    ])


@contextmanager
def plain_tensors() -> Iterator[None]:
    """MONAI transforms inside return plain tensors, not MetaTensors (MONAI's global
    ``set_track_meta``, restored on leaving). A lesion patch's spatial metadata is never read
    after it is cut, and MetaTensor bookkeeping was about a quarter of an augmented item's time
    (``tests/data/test_transforms.py`` checks the values are the same)."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def evaluation_transforms(keys: Sequence[str] = IMAGE_KEYS) -> Compose:
    """Validation and test folds: type conversion, missing images zeroed."""
    return Compose([*as_float_tensor(keys), MaskAbsentd(keys)])
