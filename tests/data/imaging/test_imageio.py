"""Geometry of every reference set, as shared/refdata/imaging/README.md and
simpleitk_report.json state it (size, spacing, origin, direction within 1e-4),
and DICOM vs NIfTI/NRRD agreement in physical space where the README says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.imaging import dicom
from dlm_ml.data.imaging.imageio import read_image, write_image

from ..refdata import (
    CRLM_CT,
    DCMQI_CT,
    DCMQI_NRRD,
    GE_ADC_NRRD,
    GE_ADC_ZIP,
    GE_DWI,
    GE_DWI_NII,
    PROSTATEX,
    PX_ADC,
    PX_CALC,
    PX_DWI,
    PX_T2,
    STS,
    TOSHIBA_ADC,
    need,
)

PX_DIRECTION = (1, 0, 0.00126, -0.0004, 0.94838, 0.31715, -0.00119, -0.31715, 0.94838)
PX_GEOMETRY = ((84, 128, 19), (2, 2, 3), (-45.6854, -112.7159, -16.9464), PX_DIRECTION)
GE_DWI_DIRECTION = (0.72623, 0.68738, -0.00985, -0.68168, 0.72192, 0.1189, 0.08884, -0.07964, 0.99286)
IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)

# folder -> (size, spacing, origin, direction), from the README / simpleitk_report.json.
SERIES = {
    PX_ADC: PX_GEOMETRY,
    PX_CALC: PX_GEOMETRY,
    PX_T2: ((384, 384, 19), (0.5, 0.5, 3), (-57.6854, -82.3631, -27.0808), PX_DIRECTION),
    CRLM_CT: ((512, 512, 25), (0.79688, 0.79688, 5.0), (-198.2, -204.0, -320.0), IDENTITY),
    TOSHIBA_ADC: ((256, 288, 36), (1.5625, 1.5625, 7.0), (-209.9848, -245.0916, -159.0144), IDENTITY),
    f"{STS}/dicom/image": ((161, 143, 48), (0.97656, 0.97656, 3.27), (1.953, 59.5702, -629.04), IDENTITY),
    DCMQI_CT: ((512, 512, 3), (0.81055, 0.81055, 1.0), (-235.2, -226.8, -128.69), IDENTITY),
    GE_ADC_ZIP: (
        (256, 256, 20), (0.7031, 0.7031, 2.99999), (-90.0225, -108.462, -43.9748),
        (0.99998, -0.0054, -0.00298, 0.0048, 0.98476, -0.17388, 0.00388, 0.17386, 0.98476),
    ),
}


def assert_geometry(image: sitk.Image, size, spacing, origin, direction, tol: float = 1e-4) -> None:
    assert tuple(image.GetSize()) == tuple(size)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=tol)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=tol)
    np.testing.assert_allclose(image.GetDirection(), direction, atol=tol)


@pytest.mark.parametrize("rel", sorted(SERIES))
def test_dicom_series_geometry(refdata, rel):
    image = read_image(need(refdata, rel))
    assert_geometry(image, *SERIES[rel])


def test_prostatex_dwi_split_by_b_value(refdata):
    scan = dicom.scan_dicom(need(refdata, PX_DWI))
    volumes = dicom.split_series(scan.headers)
    assert [v.b_value for v in volumes] == [50.0, 400.0, 800.0]
    for v in volumes:
        assert v.n_slices == 19
        image = v.read()
        assert_geometry(image, *PX_GEOMETRY)
        # Instances 1-19 are b=50, 20-38 b=400, 39-57 b=800 (README).
        numbers = sorted(h.instance_number for h in v.headers)
        assert numbers == list(range(numbers[0], numbers[0] + 19))


def test_prostatex_dwi_folder_naive_read_is_refused(refdata):
    folder = need(refdata, PX_DWI)
    with pytest.raises(dicom.AmbiguousDicomError) as err:
        read_image(folder)
    msg = str(err.value)
    assert str(folder) in msg and "3 b-values (50, 400, 800 s/mm²)" in msg and "19 slices" in msg


def test_whole_study_folder_is_refused_listing_series(refdata):
    folder = need(refdata, PROSTATEX)
    with pytest.raises(dicom.AmbiguousDicomError) as err:
        read_image(folder)
    msg = str(err.value)
    assert "4 series" in msg and "series 4" in msg and "series 8" in msg


def test_crlm_ct_padding_is_outside_body_not_air(refdata):
    folder = need(refdata, CRLM_CT)
    image = read_image(folder)
    arr = sitk.GetArrayViewFromImage(image)
    assert arr.min() == dicom.CT_OUTSIDE_FOV_HU and arr.max() == 1377
    volume = dicom.split_series(dicom.scan_dicom(folder).headers)[0]
    raw = sitk.GetArrayFromImage(dicom.read_volume(volume, replace_padding=False))
    assert raw.min() == -3024  # the scanner's padding, README §2
    info: dict = {}
    volume.read(info=info)
    assert info["ct_outside_fov_voxels"] == int((raw == -3024).sum()) > 0
    # Everything that was not padding is untouched.
    keep = raw != -3024
    np.testing.assert_array_equal(arr[keep], raw[keep])


def test_toshiba_thickness_differs_from_spacing(refdata):
    volume = dicom.split_series(dicom.scan_dicom(need(refdata, TOSHIBA_ADC)).headers)[0]
    assert volume.first.slice_thickness_mm == 6.0
    assert volume.geometry.spacing_mm[2] == pytest.approx(7.0, abs=1e-4)


def test_dcmqi_ct_overlapping_slices_and_nrrd_agree(refdata):
    ct = read_image(need(refdata, DCMQI_CT))
    seg = read_image(need(refdata, DCMQI_NRRD))
    assert_geometry(seg, ct.GetSize(), ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection())
    header = dicom.scan_dicom(refdata / DCMQI_CT).headers[0]
    assert header.slice_thickness_mm == 1.25 and ct.GetSpacing()[2] == pytest.approx(1.0, abs=1e-4)


def test_sts_dicom_and_nifti_identical(refdata):
    dcm = read_image(need(refdata, f"{STS}/dicom/image"))
    nii = read_image(need(refdata, f"{STS}/nifti/image/image.nii.gz"))
    assert_geometry(nii, dcm.GetSize(), dcm.GetSpacing(), dcm.GetOrigin(), dcm.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(dcm), sitk.GetArrayViewFromImage(nii))
    # The parent folder also holds the RTSTRUCT: non-image objects are ignored.
    both = read_image(refdata / f"{STS}/dicom")
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(both), sitk.GetArrayViewFromImage(dcm))


def test_ge_adc_zip_matches_nrrd(refdata):
    dcm = read_image(need(refdata, GE_ADC_ZIP))
    nrrd = read_image(need(refdata, GE_ADC_NRRD))
    assert dcm.GetSize() == nrrd.GetSize()
    assert np.max(np.abs(np.subtract(dcm.GetOrigin(), nrrd.GetOrigin()))) < 1e-5
    np.testing.assert_allclose(dcm.GetDirection(), nrrd.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(dcm.GetSpacing(), nrrd.GetSpacing(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(dcm), sitk.GetArrayViewFromImage(nrrd))


def test_ge_dwi_volumes_match_dcm2niix_in_physical_space(refdata):
    folder = need(refdata, GE_DWI)
    with pytest.raises(dicom.AmbiguousDicomError, match="7 volumes"):
        read_image(folder)  # files without extension, 7 volumes in one series
    volumes = dicom.split_series(dicom.scan_dicom(folder).headers)
    assert len(volumes) == 7 and [v.n_slices for v in volumes] == [2] * 7
    nii = read_image(need(refdata, GE_DWI_NII))
    assert nii.GetSize() == (256, 256, 2, 7)
    np.testing.assert_allclose(nii.GetOrigin()[:3], (-0.5359, 186.3513, -41.2157), atol=1e-4)
    nii_dir = np.asarray(nii.GetDirection()).reshape(4, 4)[:3, :3].ravel()
    np.testing.assert_allclose(
        nii_dir, (0.72623, -0.68738, -0.00985, -0.68168, -0.72192, 0.1189, 0.08884, 0.07964, 0.99286), atol=1e-4)
    for v, volume in enumerate(volumes):
        dcm = volume.read()
        assert_geometry(dcm, (256, 256, 2), (1.0156, 1.0156, 3.0), (-178.5516, -0.6103, -20.5912), GE_DWI_DIRECTION)
        # dcm2niix stored the rows flipped (LAS); in physical space the volumes are identical.
        nii_v = nii[:, :, :, v]
        resampled = sitk.Resample(nii_v, dcm, sitk.Transform(), sitk.sitkNearestNeighbor, -1, nii_v.GetPixelID())
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(resampled), sitk.GetArrayViewFromImage(dcm))


@pytest.mark.parametrize(
    "name, size, spacing, origin, direction3, pixel, lo, hi",
    [
        ("example4d.nii.gz", (128, 96, 24, 2), (2, 2, 2.2, 2000), (-117.8551, 35.7229, -7.2488, 0),
         (1, 0, 0, 0, -0.98686, 0.1616, 0, 0.1616, 0.98686), sitk.sitkInt16, 0, 1162),
        ("functional.nii", (17, 21, 3, 20), (4, 4, 8, 2), (-32, 40, 0, 0),
         (1, 0, 0, 0, -1, 0, 0, 0, 1), sitk.sitkFloat32, 629.826171875, 5571.6220703125),
        ("anatomical.nii", (33, 41, 25), (2, 2, 2), (-32, 40, -16),
         (1, 0, 0, 0, -1, 0, 0, 0, 1), sitk.sitkInt16, -610, 30393),
    ],
)
def test_nibabel_nifti_orientation_scaling_endianness(refdata, name, size, spacing, origin, direction3, pixel, lo, hi):
    image = read_image(need(refdata, f"nibabel_nifti/{name}"))
    assert tuple(image.GetSize()) == size and image.GetPixelID() == pixel
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-4)
    d = np.asarray(image.GetDirection()).reshape(image.GetDimension(), image.GetDimension())[:3, :3].ravel()
    np.testing.assert_allclose(d, direction3, atol=1e-4)
    arr = sitk.GetArrayViewFromImage(image)
    assert float(arr.min()) == pytest.approx(lo, abs=1e-3) and float(arr.max()) == pytest.approx(hi, abs=1e-3)


def test_nifti_fast_path_does_not_touch_dicom(refdata, tmp_path):
    path = need(refdata, "nibabel_nifti/anatomical.nii")
    out = tmp_path / "a.nii.gz"
    write_image(read_image(path), out)
    code = (
        "import sys; from dlm_ml.data.imaging.imageio import read_image; "
        f"im = read_image({str(out)!r}); assert im.GetSize() == (33, 41, 25); "
        "assert 'pydicom' not in sys.modules and 'dlm_ml.data.imaging.dicom' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_single_file_and_irregular_stack(refdata, tmp_path):
    folder = need(refdata, TOSHIBA_ADC)
    one = read_image(folder / "1-05.dcm")
    assert one.GetSize() == (256, 288, 1)
    gapped = tmp_path / "gapped"
    gapped.mkdir()
    for f in sorted(folder.glob("*.dcm")):
        if f.name != "1-10.dcm":  # a missing slice
            shutil.copy(f, gapped / f.name)
    with pytest.raises(dicom.DicomError, match="not uniform") as err:
        read_image(gapped)
    assert str(gapped) in str(err.value)


def test_zip_with_two_series_is_refused(refdata, tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(need(refdata, DCMQI_CT).glob("*.dcm")):
            zf.write(f, f"a/{f.name}")
        for f in sorted((refdata / TOSHIBA_ADC).glob("*.dcm"))[:3]:
            zf.write(f, f"b/{f.name}")
    with pytest.raises(dicom.AmbiguousDicomError, match="2 series") as err:
        read_image(archive)
    assert str(archive) in str(err.value)
