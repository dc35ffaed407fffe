"""Writing a lesion's saliency maps: the patch grid's physical geometry on every NIfTI file, the
patch written back unchanged, the file set per network family, the montage's labels, and ids that
would leave the output folder refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.patches import patch_grid, resample_patch
from dlm_ml.evaluation import saliency_files
from dlm_ml.evaluation.saliency_files import write_lesion_saliency
from dlm_ml.models.saliency import LesionSaliency
from dlm_ml.utils.atomic import TEMP_NAME

NAMES = ("baseline_ct", "baseline_adc", "presurgery_ct", "presurgery_adc")
PRESENT = np.array([True, False, True, True])
CENTRE = (-12.5, 30.0, 101.0)
SPACING = 2.0
WINDOWS = {"ct": "CT 60 ± 200 HU", "adc": "ADC 1200 ± 800 µm²/s"}


def maps_for(image: np.ndarray, lesion_level=frozenset({"gradcam"})) -> LesionSaliency:
    """Distinct, recognisable maps: Grad-CAM the same array in every present channel (a stacked
    CNN's lesion map), occlusion a different array per channel; NaN where absent."""
    rng = np.random.default_rng(1)
    cam = rng.random(image.shape[1:]).astype(np.float32)
    gradcam = np.where(PRESENT[:, None, None, None], cam, np.nan).astype(np.float32)
    occlusion = rng.normal(0, 0.05, image.shape).astype(np.float32)
    occlusion[~PRESENT] = np.nan
    return LesionSaliency({"gradcam": gradcam, "occlusion": occlusion}, frozenset(lesion_level), NAMES)


def patch_stack(size: int) -> np.ndarray:
    """[4, size³] patches extracted as the pipeline extracts them: a source volume with an
    asymmetric gradient resampled onto the patch grid (absent channel zero-filled)."""
    zyx = np.indices((60, 50, 40), dtype=np.float32)
    source = sitk.GetImageFromArray(zyx[0] * 100 + zyx[1] * 10 + zyx[2])
    source.SetSpacing((2.0, 1.5, 2.5))
    source.SetOrigin((-40.0, 0.0, 40.0))
    patch = resample_patch(source, CENTRE, size, SPACING, pad_value=0.0)
    array = sitk.GetArrayViewFromImage(patch).astype(np.float32)
    return np.stack([array * (k + 1) * PRESENT[k] for k in range(4)])


def write(tmp_path, image, saliency, **kwargs):
    args = {"pcr": 1, "prob_pcr": 0.7, "windows": WINDOWS}
    args.update(kwargs)
    return write_lesion_saliency(tmp_path, "P001", "L2", image, PRESENT, saliency, NAMES, CENTRE, SPACING, **args)


@pytest.mark.parametrize("size", [20, 9])
def test_every_file_carries_the_patch_grid_and_the_patch_comes_back_unchanged(tmp_path, size):
    image = patch_stack(size)
    saliency = maps_for(image)
    paths = write(tmp_path, image, saliency)
    grid = patch_grid(CENTRE, size, SPACING)
    niftis = [p for p in paths if p.name.endswith(".nii.gz")]
    assert niftis
    for path in niftis:
        written = sitk.ReadImage(str(path))
        assert written.GetSize() == grid.GetSize()
        np.testing.assert_allclose(written.GetOrigin(), grid.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(written.GetSpacing(), grid.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(written.GetDirection(), grid.GetDirection(), atol=1e-6)
        assert written.TransformPhysicalPointToIndex(CENTRE) == (size // 2,) * 3
    lesion_dir = tmp_path / "P001" / "L2"
    for c in np.flatnonzero(PRESENT):
        back = sitk.GetArrayFromImage(sitk.ReadImage(str(lesion_dir / f"image_{NAMES[c]}.nii.gz")))
        np.testing.assert_array_equal(back, image[c])
        occlusion = sitk.GetArrayFromImage(sitk.ReadImage(str(lesion_dir / f"occlusion_{NAMES[c]}.nii.gz")))
        np.testing.assert_array_equal(occlusion, saliency.maps["occlusion"][c])
    cam = sitk.GetArrayFromImage(sitk.ReadImage(str(lesion_dir / "gradcam.nii.gz")))
    np.testing.assert_array_equal(cam, saliency.maps["gradcam"][0])


def test_written_patch_lies_where_the_source_voxels_are(tmp_path):
    """The array order [D, H, W] = (z, y, x): a voxel of the written patch, mapped to physical
    space by its own header, holds the source value at that physical point."""
    zyx = np.indices((60, 50, 40), dtype=np.float32)
    source = sitk.GetImageFromArray(zyx[0] * 100 + zyx[1] * 10 + zyx[2])
    source.SetSpacing((2.0, 1.5, 2.5))
    source.SetOrigin((-40.0, 0.0, 40.0))
    image = patch_stack(20)
    write(tmp_path, image, maps_for(image))
    written = sitk.ReadImage(str(tmp_path / "P001" / "L2" / "image_baseline_ct.nii.gz"))
    for index in [(0, 0, 0), (3, 7, 12), (19, 2, 5)]:  # (x, y, z)
        point = written.TransformIndexToPhysicalPoint(index)
        continuous = source.TransformPhysicalPointToContinuousIndex(point)  # (x, y, z) of the source
        expected = continuous[2] * 100 + continuous[1] * 10 + continuous[0]  # linear field: exact
        assert written[index] == pytest.approx(expected, abs=1e-3)


def test_file_set_per_family_and_absent_channels(tmp_path):
    image = patch_stack(9)
    stacked = {p.name for p in write(tmp_path / "a", image, maps_for(image))}
    assert stacked == {"image_baseline_ct.nii.gz", "image_presurgery_ct.nii.gz", "image_presurgery_adc.nii.gz",
                       "gradcam.nii.gz", "occlusion_baseline_ct.nii.gz", "occlusion_presurgery_ct.nii.gz",
                       "occlusion_presurgery_adc.nii.gz", "montage.png"}
    paths = write(tmp_path / "b", image, maps_for(image, lesion_level=frozenset()))
    shared = {p.name for p in paths}
    assert {"gradcam_baseline_ct.nii.gz", "gradcam_presurgery_ct.nii.gz", "gradcam_presurgery_adc.nii.gz"} <= shared
    assert not any("baseline_adc" in name for name in shared), "an absent channel gets no file"
    on_disk = {p.name for p in (tmp_path / "b" / "P001" / "L2").iterdir()}
    assert on_disk == shared and not any(TEMP_NAME.match(n) for n in on_disk)
    assert (tmp_path / "b" / "P001" / "L2" / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_montage_states_lesion_outcome_probability_and_windows(tmp_path, monkeypatch):
    captured = {}

    def keep(fig, path, dpi=120):
        captured["fig"] = fig
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        return path

    monkeypatch.setattr(saliency_files, "save_figure", keep)
    image = patch_stack(9)
    write(tmp_path, image, maps_for(image), pcr=0, prob_pcr=0.234)
    fig = captured["fig"]
    title = fig._suptitle.get_text()
    assert "patient P001, lesion L2" in title and "no pCR (viable tumour)" in title and "P(pCR) = 0.23" in title
    axes = np.array(fig.axes[:12]).reshape(4, 3)
    assert [ax.get_title() for ax in axes[0]] == ["image", "Grad-CAM", "occlusion"]
    labels = [ax.get_ylabel() for ax in axes[:, 0]]
    assert labels[0] == "baseline_ct\nCT 60 ± 200 HU" and labels[3] == "presurgery_adc\nADC 1200 ± 800 µm²/s"
    assert all(t.get_text() == "missing" for ax in axes[1] for t in ax.texts)
    assert all(len(ax.images) == 2 for ax in axes[2, 1:]), "the map is drawn over the image"


@pytest.mark.parametrize("bad", ["", ".", "..", "../outside", "a/b", "a\\b", "x..y", "/abs"])
@pytest.mark.parametrize("which", ["patient", "lesion"])
def test_ids_that_would_leave_the_output_folder_are_refused(tmp_path, bad, which):
    image = patch_stack(9)
    out = tmp_path / "out"
    ids = {"patient_id": "P001", "lesion_id": "L2", f"{which}_id": bad}
    with pytest.raises(ValueError, match=re.escape(f"{which} id {bad!r}")):
        write_lesion_saliency(out, ids["patient_id"], ids["lesion_id"], image, PRESENT, maps_for(image), NAMES,
                              CENTRE, SPACING, pcr=None, prob_pcr=0.5, windows=WINDOWS)
    assert not any(tmp_path.rglob("*")), "nothing was written"


def test_maps_of_other_channels_are_refused(tmp_path):
    image = patch_stack(9)
    saliency = maps_for(image)
    other = LesionSaliency(saliency.maps, saliency.lesion_level, ("a_ct", "b_ct", "c_ct", "d_ct"))
    with pytest.raises(ValueError, match="patient 'P001', lesion 'L2': the maps are of channels"):
        write(tmp_path, image, other)
