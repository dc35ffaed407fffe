"""Broken image files in a cohort (real files, damaged after writing) are validation problems:
one per image, naming images.csv, the line, patient, timepoint and modality, all reported at
once. NaN voxels cannot be seen in a header: the first full read refuses them, naming the image."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.cohort import validate_cohort
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.data.patches import PatchConfig, build_patches


def _problems(root) -> list[str]:
    report, cohort = validate_cohort(root)
    assert cohort is None
    return [str(p) for p in report.errors]


def _line_of(root, patient: str, timepoint: str, modality: str) -> int:
    lines = (root / "images.csv").read_text().splitlines()
    return 1 + next(i for i, line in enumerate(lines) if line.startswith(f"{patient},{timepoint},{modality},"))


def _damage(root) -> dict[tuple[str, str, str], str]:
    """Four kinds of damage to four images; returns what validation must say about each."""
    truncated = root / "images/P001/presurgery_ct.nii.gz"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    vector = sitk.Compose([sitk.ReadImage(str(root / "images/P002/baseline_adc.nii.gz"))] * 3)
    sitk.WriteImage(vector, str(root / "images/P002/baseline_adc.nii.gz"))

    huge = root / "images/P003/presurgery_adc.nii.gz"
    header = bytearray(gzip.decompress(huge.read_bytes()))
    header[40:48] = np.array([3, 30000, 30000, 30000], "<i2").tobytes()  # dim[0..3] of the NIfTI-1 header
    huge.write_bytes(gzip.compress(bytes(header)))
    return {("P001", "presurgery", "ct"): "truncated: the gzip stream ends early",
            ("P002", "baseline", "adc"): "3 components per voxel",
            ("P003", "presurgery", "adc"): "MAX_VOXELS_PER_IMAGE"}


def test_broken_images_are_problems_of_their_row_all_at_once(handmade_cohort):
    expected = _damage(handmade_cohort)
    problems = _problems(handmade_cohort)
    assert len(problems) == len(expected), problems
    for (patient, timepoint, modality), reason in expected.items():
        line = _line_of(handmade_cohort, patient, timepoint, modality)
        where = f"images.csv line {line} (patient {patient}, {timepoint} {modality})"
        path = f"images/{patient}/{timepoint}_{modality}.nii.gz"
        assert any(p.startswith(where) and path in p and reason in p for p in problems), (where, problems)


def test_the_absurd_header_says_every_reason(handmade_cohort):
    _damage(handmade_cohort)
    (huge,) = [p for p in _problems(handmade_cohort) if "P003" in p]
    assert "MAX_VOXELS_PER_IMAGE" in huge and "MAX_AXIS_VOXELS" in huge and "truncated" in huge


def test_nan_voxels_pass_the_header_pass_and_stop_the_first_full_read_naming_the_image(handmade_cohort):
    path = handmade_cohort / "images/P004/presurgery_adc.nii.gz"
    image = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(image)
    arr[1, 2, 3] = np.nan
    nan_image = sitk.GetImageFromArray(arr)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(path))

    report, cohort = validate_cohort(handmade_cohort)
    assert cohort is not None, [str(p) for p in report.errors]
    with pytest.raises(ImageIntegrityError) as info:
        build_patches(cohort, PatchConfig(patch_size_mm=16), handmade_cohort.parent / "cache", progress=False,
                      log=lambda m: None)
    message = str(info.value)
    assert str(path) in message and "1 voxel(s) are not finite" in message and "(3, 2, 1) (x, y, z)" in message
    assert message.startswith("patient P004, presurgery adc: ")  # whose image, for the command's clean error
    assert not list((handmade_cohort.parent / "cache").glob("patches-*.npz"))  # nothing cached
