"""dlm-predict uses the run's preprocessing: a preprocessing key the command line asks differently
is named, one asked the same (or a speed-only setting) is not; other keys are not preprocessing."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.predict_inputs import preprocessing_differences
from dlm_ml.models.calibration import FittedCalibration, PostHocCalibration


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def _differences(train_overrides: list[str], predict_overrides: list[str]) -> list[str]:
    run_cfg = OmegaConf.to_container(_compose("train", ["paths.root_dir=/tmp/x", *train_overrides]), resolve=False)
    cfg = _compose("predict", ["run_id=r", "data.cohort_dir=/tmp/c", "paths.root_dir=/tmp/x", *predict_overrides])
    return preprocessing_differences(cfg, run_cfg, ["run_id=r", "data.cohort_dir=/tmp/c", *predict_overrides])


def test_a_changed_patch_size_or_registration_setting_is_named():
    problems = _differences(["data.patches.patch_size_mm=32"], ["data.patches.patch_size_mm=40",
                                                                "data.registration.bspline=false"])
    assert any(p.startswith("data.patches.patch_size_mm: the run used 32") and p.endswith("asked 40")
               for p in problems), problems
    assert any(p.startswith("data.registration.bspline") for p in problems), problems


def test_the_same_value_a_speed_setting_or_another_key_is_not():
    assert _differences(["data.patches.patch_size_mm=32"], ["data.patches.patch_size_mm=32.0",
                                                            "data.registration.workers=1", "flip_tta=true"]) == []


def test_a_different_group_option_is_compared_leaf_by_leaf():
    problems = _differences([], ["data/covariates=clinical"])
    assert problems and all(p.startswith("data.covariates.") for p in problems)


def test_fitted_calibration_round_trips_and_refuses_a_partial_map():
    fitted = PostHocCalibration("platt").fit([0.1, 0.4, 0.6, 0.9, 0.3, 0.7], [0, 0, 1, 1, 1, 0])
    again = FittedCalibration.from_dict(fitted.to_dict())
    assert again == fitted
    try:
        FittedCalibration.from_dict({"method": "platt", "slope": 1.0})
    except ValueError as err:
        assert "platt" in str(err)
    else:
        raise AssertionError("a platt map without an intercept was accepted")
