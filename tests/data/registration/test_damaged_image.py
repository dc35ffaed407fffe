"""An image refused on its full read (non-finite voxels) stops registration naming patient, visit and
file: it is the input's error, not a failed registration to flag and carry on with."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dlm_ml.data.cohort import load_cohort
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.data.registration import RegistrationConfig, register_cohort
from dlm_ml.data.synthetic import generate_cohort, make_config


def test_non_finite_voxels_stop_registration_naming_the_image(tmp_path):
    root = generate_cohort(tmp_path / "tiny", make_config("tiny", n_patients=1, seed=1, **{"missing.adc": 0.0}),
                           progress=False)
    cohort = load_cohort(root)
    path = cohort.image_path("P0001", "presurgery", "ct")
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(image)
    arr[2, 3, 4] = np.nan
    damaged = sitk.GetImageFromArray(arr)
    damaged.CopyInformation(image)
    sitk.WriteImage(damaged, str(path))

    with pytest.raises(ImageIntegrityError) as info:
        register_cohort(cohort, RegistrationConfig(bspline=False, workers=1), tmp_path / "cache",
                        channels=[("baseline", "ct"), ("presurgery", "ct")], patients=["P0001"], progress=False,
                        log=lambda m: None)
    message = str(info.value)
    assert message.startswith("patient P0001, presurgery/ct: ") and str(path) in message and "not finite" in message
