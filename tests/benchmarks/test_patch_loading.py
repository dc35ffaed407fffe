"""The naive MONAI chain of benchmarks/patch_loading.py cuts the cache's patch: same grid, same
intensities, within a voxel — else its patches per second would not compare like with like."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from dlm_ml.data.patches import PatchConfig, resample_patch
from tests.benchmarks.scripts import load_script
from tests.conftest import write_volume

patch_loading = load_script("patch_loading")

CONFIG = PatchConfig(patch_size_mm=24.0, spacing_mm=2.0)
CENTRE = (10.0, -6.0, 20.0)  # lesion centre, LPS mm of the baseline CT
BLOB = (16.0, -10.0, 26.0)  # a bright sphere off the centre along every axis, so a wrong axis shows


def _volume(path, direction, spacing, origin, blob_lps):
    """A CT-like volume (40 HU background, a 5 mm sphere of 300 HU at ``blob_lps``) with the given
    direction, spacing and origin, written to ``path``."""
    size = (48, 40, 32)  # x, y, z voxels
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetDirection(direction)
    reference.SetSpacing(spacing)
    reference.SetOrigin(origin)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    physical = (np.asarray(direction).reshape(3, 3) @ (index * np.asarray(spacing)).T).T + np.asarray(origin)
    inside = np.linalg.norm(physical - np.asarray(blob_lps), axis=1) <= 5.0
    values = np.where(inside, 300.0, 40.0).reshape(size).transpose(2, 1, 0)  # sitk arrays are z, y, x
    return write_volume(path, values.astype(np.float32), spacing=spacing, origin=origin, direction=direction)


def _cache_patch(path, transform=None):
    norm = CONFIG.normaliser("ct")
    patch = resample_patch(sitk.ReadImage(str(path)), CENTRE, CONFIG.size_voxels, CONFIG.spacing_mm,
                           norm.pad_value, transform)
    return norm.apply(sitk.GetArrayFromImage(patch))


def _centroid(patch):
    return np.array(ndimage.center_of_mass(np.clip(patch - np.median(patch), 0, None)))


# x flipped, y and z swapped (an oblique-free but far from identity direction), anisotropic voxels
DIRECTION = (-1, 0, 0, 0, 0, 1, 0, 1, 0)
SPACING = (0.8, 1.2, 2.5)
ORIGIN = (40.0, -40.0, -10.0)


@pytest.mark.parametrize("orientation", ["orient_ras", "Orientationd"])
def test_naive_patch_matches_cache_geometry(tmp_path, orientation, monkeypatch):
    if orientation == "Orientationd":
        pytest.importorskip("nibabel")
    monkeypatch.setattr(patch_loading, "HAVE_NIBABEL", orientation == "Orientationd")
    path = _volume(tmp_path / "ct.nii.gz", DIRECTION, SPACING, ORIGIN, BLOB)
    chain = patch_loading.naive_load_chain(CONFIG.spacing_mm)
    naive = patch_loading.ras_patch_to_cache_layout(patch_loading.naive_patch(chain, path, CENTRE, CONFIG, "ct"))
    cached = _cache_patch(path)
    assert naive.shape == cached.shape == (CONFIG.size_voxels,) * 3
    # the blob is where the cache has it, within one voxel per axis
    assert np.abs(_centroid(naive) - _centroid(cached)).max() <= 1.0
    assert np.corrcoef(naive.ravel(), cached.ravel())[0, 1] > 0.9


def test_naive_patch_follows_the_registration_to_the_lesion(tmp_path):
    """A later image shifted by (7, -5, 9) mm: the naive chain maps the centre through the
    transform (baseline CT point → image point) and finds the lesion where the cache does."""
    shift = np.array([7.0, -5.0, 9.0])
    path = _volume(tmp_path / "ct.nii.gz", DIRECTION, SPACING, ORIGIN, tuple(np.asarray(BLOB) + shift))
    transform = sitk.TranslationTransform(3, shift.tolist())
    tfm = tmp_path / "to_image.tfm"
    sitk.WriteTransform(transform, str(tfm))
    chain = patch_loading.naive_load_chain(CONFIG.spacing_mm)
    naive = patch_loading.ras_patch_to_cache_layout(
        patch_loading.naive_patch(chain, path, CENTRE, CONFIG, "ct", transform_path=tfm))
    cached = _cache_patch(path, transform)
    assert np.abs(_centroid(naive) - _centroid(cached)).max() <= 1.0


def test_crop_pads_with_the_pad_value_where_the_patch_leaves_the_image(tmp_path):
    """A lesion at the image's edge: the patch keeps its size and its centre; outside is the pad value."""
    path = _volume(tmp_path / "ct.nii.gz", (1, 0, 0, 0, 1, 0, 0, 0, 1), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0),
                   (0.0, 0.0, 0.0))
    data = patch_loading.naive_load_chain(2.0)({"image": str(path)})
    voxel = patch_loading.lps_to_voxel(data["image"].affine, (0.0, 0.0, 0.0))
    cut = patch_loading.crop_around(data, voxel, 6, pad_value=-1000.0)["image"]
    assert tuple(cut.shape) == (1, 6, 6, 6)
    values = np.asarray(cut[0])
    # The LPS origin is voxel 0 of the 48 × 40 × 32 file: in RAS it is the last index of the first two
    # axes (continuous 47 and 39, cube 44..49 and 36..41) and the first of the third (cube -2..3), so a
    # 4 × 4 × 4 block of the image, the rest padding.
    inside = np.zeros(values.shape, bool)
    inside[0:4, 0:4, 2:6] = True
    assert (values[inside] != -1000.0).all()
    assert (values[~inside] == -1000.0).all()
