"""Patch geometry (lesion at the patch centre), presence flags, leakage guard, cache."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.patches import PatchConfig, build_patches, resample_patch


def _blob_image(centre_mm, spacing, direction, size=(60, 50, 30), origin=(-20.0, -30.0, -40.0)):
    """An image whose only bright spot is a small Gaussian blob at ``centre_mm`` (physical)."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    d = np.array(direction).reshape(3, 3)
    phys = np.array(origin) + (idx * np.array(spacing)) @ d.T
    dist2 = ((phys - np.array(centre_mm)) ** 2).sum(1)
    values = np.exp(-dist2 / (2 * 3.0 ** 2)).reshape(size)  # x, y, z
    array = np.transpose(values, (2, 1, 0)).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _rotation(deg_z, deg_x):
    a, b = math.radians(deg_z), math.radians(deg_x)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return tuple((rz @ rx).ravel())


@pytest.mark.parametrize("spacing,direction", [
    ((1.0, 1.0, 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
    ((2.0, 2.0, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
    ((0.8, 0.8, 3.0), _rotation(20, 15)),
    ((1.5, 1.5, 4.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),  # LAS-like flipped axes
])
def test_lesion_lands_at_patch_centre(spacing, direction):
    size = (60, 50, 30)
    probe = sitk.Image(list(size), sitk.sitkUInt8)
    probe.SetSpacing(spacing)
    probe.SetDirection(direction)
    probe.SetOrigin((-20.0, -30.0, -40.0))
    # an off-grid lesion position well inside the field of view whatever the direction
    centre = probe.TransformContinuousIndexToPhysicalPoint((31.3, 24.6, 14.2))
    image = _blob_image(centre, spacing, direction, size=size)
    patch = resample_patch(image, centre, size_voxels=21, spacing_mm=1.0, pad_value=0.0)
    array = sitk.GetArrayFromImage(patch)  # z, y, x
    peak = np.array(np.unravel_index(np.argmax(array), array.shape))
    assert np.all(np.abs(peak - 10) <= 1), f"peak at {peak}, expected centre 10 within one voxel"
    # the patch grid is centred on the lesion in physical space
    mid = patch.TransformIndexToPhysicalPoint((10, 10, 10))
    assert np.allclose(mid, centre, atol=1e-6)


def test_patch_shapes_presence_and_normalisation(handmade_cohort):
    (handmade_cohort / "images.csv").write_text(
        "\n".join(line for line in (handmade_cohort / "images.csv").read_text().splitlines()
                  if "P002,presurgery,adc" not in line) + "\n")
    cohort = load_cohort(handmade_cohort)
    config = PatchConfig(patch_size_mm=16, spacing_mm=2)
    patches = build_patches(cohort, config, handmade_cohort.parent / "cache", progress=False, log=lambda m: None)
    assert patches.image.shape == (8, 4, 8, 8, 8)
    assert patches.channel_names == ["baseline_ct", "baseline_adc", "presurgery_ct", "presurgery_adc"]
    missing = patches.lesions.patient_id.eq("P002").to_numpy()
    assert not patches.present[missing, 3].any() and patches.present[~missing].all()
    assert np.all(patches.image[missing, 3] == 0), "missing image must be zero-filled"
    # CT 100 HU with centre 60, half-width 200 → about 0.2
    assert abs(float(np.median(patches.image[:, 0])) - 0.2) < 0.05


def test_post_decision_timepoint_refused_unless_explicit():
    with pytest.raises(ValueError, match="after the surgical decision"):
        PatchConfig(timepoints=("baseline", "presurgery", "followup"))
    config = PatchConfig(timepoints=("baseline", "followup"), allow_post_decision=True)
    assert config.channel_names()[-1] == "followup_adc"


def test_cache_reused_and_invalidated(handmade_cohort, tmp_path):
    cohort = load_cohort(handmade_cohort)
    cache = tmp_path / "cache"
    messages = []
    first = build_patches(cohort, PatchConfig(patch_size_mm=16), cache, progress=False, log=messages.append)
    second = build_patches(cohort, PatchConfig(patch_size_mm=16), cache, progress=False, log=messages.append)
    assert "miss" in messages[0] and "hit" in messages[1]
    assert first.cache_key == second.cache_key and np.array_equal(first.image, second.image)
    # any parameter change gives a new key and a fresh extraction
    third = build_patches(cohort, PatchConfig(patch_size_mm=16, normalisation={
        "ct": {"center": 0.0, "half_width": 100.0}, "adc": {"center": 1000.0, "half_width": 500.0}}),
        cache, progress=False, log=messages.append)
    assert third.cache_key != first.cache_key and "miss" in messages[2]
    assert not np.array_equal(third.image, first.image)
    # so does a change of an input image
    path = handmade_cohort / "images/P001/baseline_ct.nii.gz"
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image + 50.0, str(path))
    fourth = build_patches(load_cohort(handmade_cohort), PatchConfig(patch_size_mm=16), cache, progress=False,
                           log=messages.append)
    assert fourth.cache_key != first.cache_key and "miss" in messages[3]


def test_parallel_extraction_matches_serial(handmade_cohort, tmp_path):
    cohort = load_cohort(handmade_cohort)
    serial = build_patches(cohort, PatchConfig(patch_size_mm=16), tmp_path / "a", progress=False, log=lambda m: None)
    parallel = build_patches(cohort, PatchConfig(patch_size_mm=16), tmp_path / "b", num_workers=2, progress=False,
                             log=lambda m: None)
    assert np.array_equal(serial.image, parallel.image)
    pd.testing.assert_frame_equal(serial.lesions, parallel.lesions)
