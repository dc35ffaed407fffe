"""A missing image stays exactly zero through augmentation and evaluation transforms: noise,
intensity scaling and affine border filling never put values into a channel flagged absent.
The faster way training applies them (plain tensors, a reused affine grid) changes no value."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import get_track_meta

from dlm_ml.data.transforms import MaskAbsentd, evaluation_transforms, plain_tensors, training_transforms

PRESENT = np.array([True, False, True, False])


def record(seed: int = 0, absent_value: float = 0.0) -> dict:
    """A lesion record with 4 channels of 8³ voxels; channels 1 and 3 absent (holding ``absent_value``)."""
    image = np.random.default_rng(seed).normal(size=(4, 8, 8, 8)).astype(np.float32)
    image[~PRESENT] = absent_value
    return {"image": image, "present": PRESENT.copy()}


def test_absent_channels_stay_zero_under_strong_augmentation():
    transform = training_transforms(noise_std=1.0, intensity_scale=0.5, affine_prob=1.0)
    source = record()
    for seed in range(40):
        transform.set_random_state(seed=seed)
        out = transform(dict(source))
        image = out["image"]
        assert type(image) is torch.Tensor and image.shape == (4, 8, 8, 8) and image.dtype == torch.float32
        assert torch.count_nonzero(image[~torch.from_numpy(PRESENT)]) == 0, f"seed {seed}"
        # Present channels are augmented (an affine is always drawn).
        assert not torch.equal(image[PRESENT], torch.from_numpy(source["image"][PRESENT])), f"seed {seed}"


def test_evaluation_zeroes_absent_channels_and_keeps_present_ones():
    source = record(absent_value=7.0)  # e.g. a patch set written before images were masked
    out = evaluation_transforms()(dict(source))["image"]
    assert torch.count_nonzero(out[~torch.from_numpy(PRESENT)]) == 0
    assert torch.equal(out[PRESENT], torch.from_numpy(source["image"][PRESENT]))


def test_mask_absent_keeps_every_channel_when_all_are_present():
    source = record()
    source["present"] = np.ones(4, bool)
    out = MaskAbsentd()(source)["image"]
    assert torch.equal(out, torch.from_numpy(source["image"]))


def test_plain_tensors_and_a_reused_grid_give_the_same_augmented_patches():
    """What the training dataset does (``plain_tensors``, ``spatial_size`` known) against MONAI's
    default way, item by item over seeds that draw every augmentation; the global MONAI flag is
    restored afterwards."""
    source = record()
    default = training_transforms(affine_prob=1.0)
    fast = training_transforms(affine_prob=1.0, spatial_size=source["image"].shape[1:])
    assert get_track_meta()
    for seed in range(20):
        default.set_random_state(seed=seed)
        fast.set_random_state(seed=seed)
        expected = default(dict(source))["image"]
        with plain_tensors():
            got = fast(dict(source))["image"]
        assert type(got) is torch.Tensor and torch.equal(got, expected), f"seed {seed}"
    assert get_track_meta()
