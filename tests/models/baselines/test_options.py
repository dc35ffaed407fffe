"""Every baseline option of the model config group builds a LesionModel that fits and predicts."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.models.baselines import INPUT_TABLES
from tests.model_options import BASELINE_OPTIONS
from tests.models.baselines.conftest import lesion_feature_frame


def test_the_baselines_are_options():
    assert {"clinical_logistic", "radiomics", "rule_disappeared", "rule_shrinkage",
            "rule_adc_change"} <= set(BASELINE_OPTIONS)


@pytest.mark.parametrize("model", BASELINE_OPTIONS)
def test_option_builds_fits_and_predicts(model):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    estimator = hydra.utils.instantiate(cfg.model.estimator)
    assert set(estimator.inputs) <= set(INPUT_TABLES)
    frame = lesion_feature_frame(n_patients=40, seed=5)
    frame["adc_change"] = frame.presurgery_adc_roi__mean / frame.baseline_adc_roi__mean - 1
    prob = estimator.fit(frame, frame.pcr.to_numpy(), frame.patient_id.to_numpy()).predict_proba(frame)
    assert prob.shape == (len(frame),) and np.all((prob >= 0) & (prob <= 1))
    assert isinstance(estimator.summary(), dict)
