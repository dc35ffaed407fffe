"""Regions: sphere volume, mask ROI, peritumoral ring, empty-ROI reports (no mirp involved)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.radiomics import RadiomicsConfig
from dlm_ml.data.radiomics.roi import (
    lesion_regions,
    patient_regions,
    peritumoral_ring,
    sphere_roi,
    voxel_centres,
)
from tests.conftest import write_volume


@pytest.mark.parametrize("diameter,spacing", [(12.0, 1.0), (20.0, 1.0), (20.0, 0.5)])
def test_sphere_voxel_count_matches_its_volume(diameter, spacing):
    size = int(diameter / spacing) + 9
    roi = sphere_roi((3.3, -7.1, 40.2), diameter, (3.3, -7.1, 40.2), size, spacing)
    expected = 4.0 / 3.0 * math.pi * (diameter / 2) ** 3 / spacing ** 3
    assert abs(roi.sum() - expected) / expected < 0.03, (roi.sum(), expected)


def test_ring_excludes_roi_and_has_the_configured_thickness():
    spacing, ring_mm = 1.0, 3.0
    roi = sphere_roi((0, 0, 0), 10.0, (0, 0, 0), 25, spacing)
    ring = peritumoral_ring(roi, spacing, ring_mm)
    assert not (ring & roi).any()
    points = voxel_centres((0, 0, 0), 25, spacing)
    roi_points, outside = points[roi], ~roi
    # brute force: distance of every voxel outside the ROI to the nearest ROI voxel centre
    dist = np.full(roi.shape, np.inf)
    flat = points[outside]
    dist[outside] = np.sqrt(((flat[:, None, :] - roi_points[None]) ** 2).sum(-1)).min(1)
    assert np.array_equal(ring, outside & (dist <= ring_mm))
    assert dist[ring].max() == pytest.approx(ring_mm, abs=0.5 * spacing)


def test_mask_roi_is_the_label_on_the_grid(tmp_path):
    labels = np.zeros((30, 40, 40), np.uint8)   # z, y, x on a 1 mm grid at origin (5, -3, 10)
    labels[10:16, 12:20, 20:25] = 2             # the lesion: 6 × 8 × 5 voxels
    labels[2:4, 2:4, 2:4] = 1                   # another lesion
    write_volume(tmp_path / "masks.nii.gz", labels, origin=(5.0, -3.0, 10.0))
    lesion = pd.Series({"patient_id": "P1", "lesion_id": "L2", "x_mm": 0.0, "y_mm": 0.0, "z_mm": 0.0,
                        "diameter_mm": 5.0, "mask_path": "masks.nii.gz", "mask_label": "2"})
    regions = lesion_regions(lesion, tmp_path, RadiomicsConfig(ring_mm=2.0), None)
    roi = regions.regions["roi"]
    assert regions.source == "mask" and roi.sum() == (labels == 2).sum()
    points = voxel_centres(regions.centre_mm, regions.size_voxels, 1.0)[roi]
    zyx = np.argwhere(labels == 2)
    expected = zyx[:, ::-1] + np.array([5.0, -3.0, 10.0])
    assert np.allclose(np.sort(points, axis=0), np.sort(expected, axis=0), atol=1e-6)


def test_empty_rois_are_all_reported_with_patient_and_lesion(tmp_path):
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:8, 5:8, 5:8] = 1
    write_volume(tmp_path / "masks.nii.gz", labels)
    write_volume(tmp_path / "ct.nii.gz", np.zeros((20, 20, 20), np.float32))
    records = [
        {"patient_id": "P7", "lesion_id": "L1", "x_mm": 6.0, "y_mm": 6.0, "z_mm": 6.0, "diameter_mm": 4.0,
         "mask_path": "masks.nii.gz", "mask_label": "1"},                          # fine
        {"patient_id": "P7", "lesion_id": "L2", "x_mm": 6.0, "y_mm": 6.0, "z_mm": 6.0, "diameter_mm": 4.0,
         "mask_path": "masks.nii.gz", "mask_label": "3"},                          # label absent
        {"patient_id": "P7", "lesion_id": "L3", "x_mm": 300.0, "y_mm": 6.0, "z_mm": 6.0, "diameter_mm": 4.0,
         "mask_path": None, "mask_label": None},                                   # sphere outside the CT
    ]
    rows, regions, problems = patient_regions(([0, 1, 2], records, str(tmp_path), RadiomicsConfig().to_dict(),
                                               str(tmp_path / "ct.nii.gz")))
    assert regions[0] is not None and regions[1] is None and regions[2] is None
    assert len(problems) == 2
    assert "patient P7, lesion L2" in problems[0] and "label" in problems[0]
    assert "patient P7, lesion L3" in problems[1] and "outside" in problems[1]


def test_followup_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="after the surgical decision"):
        RadiomicsConfig(timepoints=("baseline", "followup"))
    assert RadiomicsConfig(timepoints=("baseline", "followup"), allow_post_decision=True,
                           delta_pairs=[("baseline", "followup")]).timepoints == ("baseline", "followup")

