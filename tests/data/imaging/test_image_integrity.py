"""Broken image files, written for real with SimpleITK and then damaged, are refused by every
full read (read_image) and, where a header can show it, by the header pass (read_image_header),
each naming the file and every reason. ITK itself zero-fills a truncated NIfTI and reads NaN
voxels of a NIfTI as 0, so these tests fail without the checks."""

from __future__ import annotations

import gzip
import pickle
import re

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.imaging.image_header import read_image_header
from dlm_ml.data.imaging.imageio import read_image
from dlm_ml.data.imaging.integrity import MAX_AXIS_VOXELS, MAX_VOXELS_PER_IMAGE, ImageIntegrityError

from ..refdata import STS, need

# ITK sets these two entries of a read image to matrix objects SimpleITK cannot show or set.
OPAQUE_METADATA = {"ITK_original_direction", "ITK_original_spacing"}
OBLIQUE = (0.9, -0.2, 0.3873, 0.2, 0.98, 0.0, -0.3873, 0.0775, 0.9187)


def _volume(dtype=np.float32, shape=(12, 20, 24), seed=0) -> sitk.Image:
    arr = np.random.default_rng(seed).normal(100, 30, shape).astype(dtype)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-10.0, 20.0, 5.0))
    return image


def _write(image: sitk.Image, path, compress: bool | None = None):
    compress = str(path).endswith(".gz") if compress is None else compress
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _assert_refused(read, path, *patterns):
    with pytest.raises(ImageIntegrityError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert re.search(pattern, message), message
    return info.value


SUFFIXES = [("nii.gz", True), ("nii", False), ("nrrd", True), ("nrrd", False), ("mha", True), ("mha", False)]


@pytest.mark.parametrize("suffix, compress", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_truncated_file_is_refused_by_header_and_full_read(tmp_path, suffix, compress, dtype):
    path = _truncate(_write(_volume(dtype), tmp_path / f"ct.{suffix}", compress))
    for read in (read_image_header, read_image):
        _assert_refused(read, path, "truncated")


def test_truncated_detached_data_files_are_refused(tmp_path):
    for name, data in (("a.nhdr", "a.raw"), ("b.mhd", "b.raw")):
        _write(_volume(), tmp_path / name, compress=False)
        _truncate(tmp_path / data, keep=0.9)
        _assert_refused(read_image_header, tmp_path / name, "truncated", data)


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "nrrd", "mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_voxels_are_refused_with_count_and_first_index(tmp_path, suffix, dtype):
    arr = np.full((6, 7, 8), 1100.0, dtype)
    arr[2, 3, 4] = np.nan
    arr[5, 0, 1] = np.inf
    path = _write(sitk.GetImageFromArray(arr), tmp_path / f"adc.{suffix}")
    read_image_header(path)  # a header cannot show voxel values
    _assert_refused(read_image, path, r"2 voxel\(s\) are not finite", r"\(4, 3, 2\) \(x, y, z\)")


@pytest.mark.parametrize("suffix", ["nii.gz", "nrrd", "mha"])
def test_vector_image_is_refused(tmp_path, suffix):
    vector = sitk.Compose([_volume(seed=s) for s in range(3)])
    path = _write(vector, tmp_path / f"field.{suffix}", compress=True)
    for read in (read_image_header, read_image):
        _assert_refused(read, path, "3 components per voxel")


def test_absurd_size_in_a_hand_edited_nrrd_header_is_refused_without_reading(tmp_path):
    path = _write(sitk.Image([4, 4, 4], sitk.sitkInt16), tmp_path / "huge.nrrd", compress=False)
    text = path.read_bytes()
    assert b"sizes: 4 4 4\n" in text
    path.write_bytes(text.replace(b"sizes: 4 4 4\n", b"sizes: 30000 30000 30000\n"))
    for read in (read_image_header, read_image):
        err = _assert_refused(read, path, "MAX_VOXELS_PER_IMAGE", "MAX_AXIS_VOXELS", "truncated")
        assert len(err.problems) == 3  # every reason at once


def test_absurd_size_in_a_hand_edited_nifti_header_is_refused(tmp_path):
    path = _write(_volume(np.int16, (4, 4, 4)), tmp_path / "huge.nii.gz")
    header = bytearray(gzip.decompress(path.read_bytes()))
    header[40:48] = np.array([3, 30000, 30000, 30000], "<i2").tobytes()  # dim[0..3]
    path.write_bytes(gzip.compress(bytes(header)))
    for read in (read_image_header, read_image):
        _assert_refused(read, path, rf"2.7e\+13 voxels; at most {MAX_VOXELS_PER_IMAGE}", "truncated")


def test_one_axis_over_the_limit_is_refused(tmp_path):
    path = _write(sitk.Image([MAX_AXIS_VOXELS + 1, 1, 2], sitk.sitkUInt8), tmp_path / "line.nrrd")
    _assert_refused(read_image_header, path, f"{MAX_AXIS_VOXELS + 1} voxels along an axis")


def _assert_same_as_itk(path):
    ours, itk = read_image(path), sitk.ReadImage(str(path))
    assert ours.GetPixelID() == itk.GetPixelID() and ours.GetSize() == itk.GetSize()
    assert ours.GetSpacing() == itk.GetSpacing() and ours.GetOrigin() == itk.GetOrigin()
    assert ours.GetDirection() == itk.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(itk))
    keys = set(itk.GetMetaDataKeys()) - OPAQUE_METADATA
    assert keys <= set(ours.GetMetaDataKeys())
    assert all(ours.GetMetaData(k) == itk.GetMetaData(k) for k in keys)


@pytest.mark.parametrize("suffix", ["nii.gz", "nii"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_sound_nifti_reads_as_itk_reads_it(tmp_path, suffix, dtype):
    """A float NIfTI's voxels are read as stored (not through ITK): the image is ITK's, bit for bit."""
    image = _volume(dtype)
    image.SetDirection(OBLIQUE)
    _assert_same_as_itk(_write(image, tmp_path / f"ct.{suffix}"))


def test_real_float_nifti_reads_as_itk_reads_it(refdata):
    _assert_same_as_itk(need(refdata, f"{STS}/nifti/image/image.nii.gz"))


def test_multi_member_gzip_is_not_mistaken_for_truncated(tmp_path):
    """The gzip trailer holds only the last member's length: a sound multi-member stream (bgzip,
    pigz -i) must be counted, not refused."""
    path = _write(_volume(), tmp_path / "ct.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    half = len(raw) // 2
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    read_image_header(two)
    # copies: a view of an image nobody holds reads freed memory
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(two)), sitk.GetArrayFromImage(read_image(path)))


def test_refusal_crosses_a_process_boundary_intact(tmp_path):
    """Registration and patch workers run in spawned processes: the refusal is pickled back."""
    path = _truncate(_write(_volume(), tmp_path / "ct.nii.gz"))
    err = _assert_refused(read_image, path, "truncated")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ImageIntegrityError) and str(back) == str(err) and back.problems == err.problems
