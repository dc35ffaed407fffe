"""The quality checks of a deformable registration evaluate it through a displacement field
(``pair.qa_transform``): the same points, the same figures, as through the B-spline itself."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.registration import RegistrationConfig, prepare
from dlm_ml.data.registration.pair import lesion_correlation, mattes_metric, overlap, qa_transform
from dlm_ml.data.synthetic import generate_cohort, make_config

CONFIG = RegistrationConfig(workers=1)


@pytest.fixture(scope="module")
def baseline_ct(tmp_path_factory):
    root = generate_cohort(tmp_path_factory.mktemp("qa") / "tiny", make_config("tiny", n_patients=1, seed=2),
                           progress=False)
    return prepare(sitk.ReadImage(str(root / "images/P0001/baseline_ct.nii.gz")), "ct", CONFIG,
                   spacing_mm=CONFIG.working_spacing_mm)


def _deformable(fixed) -> sitk.CompositeTransform:
    """An affine (3° about z, 4 mm shift) then a B-spline of a 50 mm mesh with displacements
    of up to 5 mm: the shape of a registration result (``run_stages``)."""
    affine = sitk.AffineTransform(3)
    c, s = np.cos(np.radians(3)), np.sin(np.radians(3))
    affine.SetMatrix((c, -s, 0, s, c, 0, 0, 0, 1))
    affine.SetTranslation((4.0, -2.0, 1.0))
    affine.SetCenter(tuple(fixed.image.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in fixed.image.GetSize()])))
    extent = np.array(fixed.image.GetSize()) * np.array(fixed.image.GetSpacing())
    bspline = sitk.BSplineTransformInitializer(fixed.image, [max(1, int(round(e / 50))) for e in extent], 3)
    params = np.random.default_rng(0).uniform(-5, 5, len(bspline.GetParameters()))
    bspline.SetParameters(tuple(params))
    total = sitk.CompositeTransform([affine, bspline])
    total.FlattenTransform()
    return total


def test_field_maps_every_voxel_of_the_fixed_grid_as_the_bspline_does(baseline_ct):
    fixed = baseline_ct
    tx = _deformable(fixed)
    field = qa_transform(tx, fixed.image)
    assert field.GetName() == "DisplacementFieldTransform"
    size = np.array(fixed.image.GetSize())
    corners = [tuple(c * (size - 1)) for c in np.ndindex(2, 2, 2)]  # the grid's outermost voxels too
    inner = [tuple(v) for v in np.random.default_rng(1).integers(0, size, (300, 3))]
    points = [fixed.image.TransformIndexToPhysicalPoint([int(x) for x in i]) for i in corners + inner]
    error = [np.linalg.norm(np.subtract(tx.TransformPoint(p), field.TransformPoint(p))) for p in points]
    moved = [np.linalg.norm(np.subtract(tx.TransformPoint(p), p)) for p in points]
    assert min(moved) > 1.0  # a real deformation
    assert max(error) < 1e-3, max(error)


def test_checks_through_the_field_equal_those_through_the_bspline(baseline_ct):
    fixed = baseline_ct
    tx = _deformable(fixed)
    field = qa_transform(tx, fixed.image)
    centres = [fixed.image.TransformContinuousIndexToPhysicalPoint([n / 2 for n in fixed.image.GetSize()])]
    exact = (overlap(fixed, fixed, tx)[0], lesion_correlation(fixed, fixed, tx, centres, 50.0),
             mattes_metric(fixed, fixed, tx))
    fast = (overlap(fixed, fixed, field)[0], lesion_correlation(fixed, fixed, field, centres, 50.0),
            mattes_metric(fixed, fixed, field))
    assert exact[1] < 0.99 and exact[2] > mattes_metric(fixed, fixed, sitk.Transform())  # the deformation shows
    np.testing.assert_allclose(fast, exact, atol=2e-3)


def test_rigid_and_affine_results_are_checked_as_they_are(baseline_ct):
    rigid = sitk.Euler3DTransform((0, 0, 0), 0.1, 0.0, 0.0, (3.0, 0.0, 0.0))
    affine = sitk.AffineTransform(3)
    assert qa_transform(rigid, baseline_ct.image) is rigid
    assert qa_transform(affine, baseline_ct.image) is affine
