"""dlm-evaluate's configuration: the evaluation group builds the settings evaluate() takes."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.evaluation.settings import EvaluationSettings, load_settings


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


def test_group_instantiates_the_settings_with_the_run_seed():
    cfg = _compose("seed=7", "evaluation.n_boot=300")
    settings = instantiate(cfg.evaluation)
    assert isinstance(settings, EvaluationSettings)
    assert (settings.seed, settings.n_boot) == (7, 300)
    # the same file is what load_settings reads outside Hydra: one source of the defaults
    assert settings == load_settings(seed=7, n_boot=300)
    assert settings.threshold_grid[0] > 0 and settings.threshold_grid[-1] < 1


def test_bad_settings_are_refused_with_the_field_named():
    with pytest.raises(InstantiationException, match="n_boot must be an integer >= 2"):
        instantiate(_compose("evaluation.n_boot=1").evaluation)
    with pytest.raises(ValueError, match="decision_thresholds"):
        load_settings(seed=1, decision_thresholds={"start": 0.0, "stop": 0.9, "step": 0.1})
