"""Masks: DICOM SEG (pydicom), NRRD, NIfTI; resampling; lesion centre and diameter."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import pack_bits

from dlm_ml.data.imaging import masks
from dlm_ml.data.imaging.imageio import read_image

from ..refdata import DCMQI_CT, DCMQI_NRRD, DCMQI_SEG, STS, need

LIVER_VOXELS = 107_098  # README §5
STS_VOXELS = 17_090  # README §4


@pytest.fixture(scope="module")
def liver(refdata):
    ct = read_image(need(refdata, DCMQI_CT))
    nrrd = sitk.GetArrayFromImage(read_image(need(refdata, DCMQI_NRRD)))
    return ct, nrrd


def test_seg_segments_and_voxels(refdata, liver):
    ct, nrrd = liver
    seg = masks.read_seg(need(refdata, DCMQI_SEG))
    assert seg.segments == {1: "Liver"}
    own = seg.masks[1]
    # The SEG's own grid is the CT's (README: same geometry).
    assert own.GetSize() == ct.GetSize()
    np.testing.assert_allclose(own.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(own.GetSpacing(), ct.GetSpacing(), atol=1e-4)
    for label in ("Liver", "liver", 1, "1"):
        mask = masks.load_mask(refdata / DCMQI_SEG, label, reference=ct)
        arr = sitk.GetArrayFromImage(mask)
        assert mask.GetPixelID() == sitk.sitkUInt8 and int(arr.sum()) == LIVER_VOXELS
        np.testing.assert_array_equal(arr, nrrd)  # identical to Slicer's NRRD
    with pytest.raises(masks.MaskError, match="'Liver'"):
        masks.load_mask(refdata / DCMQI_SEG, "Tumor_1")


def test_seg_frames_placed_by_position_not_order(refdata, liver, tmp_path):
    ct, nrrd = liver
    ds = pydicom.dcmread(need(refdata, DCMQI_SEG))
    frames = ds.pixel_array
    positions = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]
    order = np.argsort(positions)
    keep = [order[2], order[0]]  # top slice first, middle slice dropped
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in keep])
    ds.PixelData = pack_bits(frames[keep])
    ds.NumberOfFrames = 2
    path = tmp_path / "partial_seg.dcm"
    ds.save_as(path)
    arr = sitk.GetArrayFromImage(masks.load_mask(path, "Liver", reference=ct))
    np.testing.assert_array_equal(arr[0], nrrd[0])
    np.testing.assert_array_equal(arr[2], nrrd[2])
    assert not arr[1].any()


def test_nrrd_and_nifti_label_maps(refdata):
    nrrd = masks.load_mask(need(refdata, DCMQI_NRRD), 1)
    assert int(sitk.GetArrayViewFromImage(nrrd).sum()) == LIVER_VOXELS
    sts = masks.load_mask(need(refdata, f"{STS}/nifti/mask/mask.nii.gz"))
    assert int(sitk.GetArrayViewFromImage(sts).sum()) == STS_VOXELS
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sts)
    assert stats.GetBoundingBox(1) == (52, 52, 16, 57, 39, 16)
    with pytest.raises(masks.MaskError, match="no voxel"):
        masks.load_mask(refdata / DCMQI_NRRD, 2)


def test_slicer_segment_names(tmp_path):
    arr = np.zeros((5, 6, 7), np.uint8)
    arr[1:3, 2:4, 2:5] = 2
    image = sitk.GetImageFromArray(arr)
    image.SetMetaData("Segment0_Name", "Tumor_1")
    image.SetMetaData("Segment0_LabelValue", "2")
    image.SetMetaData("Segment0_Layer", "0")
    path = tmp_path / "seg.nrrd"
    sitk.WriteImage(image, str(path))
    mask = masks.load_mask(path, "Tumor_1")
    assert int(sitk.GetArrayViewFromImage(mask).sum()) == 12
    with pytest.raises(masks.MaskError, match="Tumor_1"):
        masks.load_mask(path, "Liver")


def test_sts_lesion_geometry(refdata):
    mask = masks.load_mask(need(refdata, f"{STS}/nifti/mask/mask.nii.gz"))
    geo = masks.lesion_geometry(mask)
    assert geo.n_voxels == STS_VOXELS
    assert geo.volume_mm3 == pytest.approx(53295.4, abs=0.5)  # README: 53.3 cm³
    assert geo.diameter_mm == pytest.approx((6 * geo.volume_mm3 / np.pi) ** (1 / 3), rel=1e-9)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    np.testing.assert_allclose(geo.centre_mm, stats.GetCentroid(1), atol=1e-6)
    extent = masks.lesion_geometry(mask, method="max_extent").diameter_mm
    box = np.array([57, 39, 16]) * np.array(mask.GetSpacing())
    assert box.max() <= extent <= np.linalg.norm(box)


def test_sphere_diameters_and_resampling():
    size, r = 41, 10.0
    z, y, x = np.mgrid[:size, :size, :size]
    ball = ((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= r**2).astype(np.uint8)
    mask = sitk.GetImageFromArray(ball)
    mask.SetOrigin((-20.0, -20.0, -20.0))
    geo = masks.lesion_geometry(mask)
    assert geo.diameter_mm == pytest.approx(2 * r, rel=0.02)
    np.testing.assert_allclose(geo.centre_mm, (0, 0, 0), atol=1e-9)
    assert masks.lesion_geometry(mask, method="max_extent").diameter_mm == pytest.approx(2 * r + 1, abs=1.0)
    # Nearest-neighbour resampling onto a coarser, shifted grid keeps volume and centre.
    ref = sitk.Image(30, 30, 14, sitk.sitkInt16)
    ref.SetSpacing((1.5, 1.5, 3.0))
    ref.SetOrigin((-22.0, -21.0, -20.5))
    moved = masks.resample_to(mask, ref)
    assert moved.GetSpacing() == ref.GetSpacing()
    geo2 = masks.lesion_geometry(moved)
    assert geo2.volume_mm3 == pytest.approx(geo.volume_mm3, rel=0.1)
    assert np.linalg.norm(np.subtract(geo2.centre_mm, geo.centre_mm)) < 1.0
