"""build_network gives a network that reads covariates the fold's encoded width, and refuses
covariates for a network that would silently ignore them."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.models.build import build_network
from dlm_ml.models.longitudinal import CovariateNet, SharedEncoderNet


def model_config(model: str):
    """The ``model.net`` node of the train config with ``model=<model>`` on 16 mm patches (8 voxels)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", "data.patches.patch_size_mm=16"])
    return cfg.model.net


@pytest.mark.parametrize(("model", "kind"), [("longitudinal", SharedEncoderNet),
                                             ("longitudinal_attention", SharedEncoderNet),
                                             ("covariates_only", CovariateNet)])
def test_the_folds_covariate_width_reaches_the_network(model, kind):
    net_cfg = model_config(model)
    assert net_cfg.n_covariates == 0  # the config's placeholder
    net = build_network(net_cfg, 5)
    assert isinstance(net, kind) and net.n_covariates == 5
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 4, 8, 8, 8), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, 5))
    assert out.shape == (2,)


def test_a_shared_encoder_network_builds_without_covariates():
    net = build_network(model_config("longitudinal"), 0)
    assert isinstance(net, SharedEncoderNet) and net.n_covariates == 0


def test_covariates_for_a_network_that_does_not_read_them_are_refused():
    net_cfg = model_config("small_cnn")
    assert "n_covariates" not in net_cfg
    with pytest.raises(ValueError, match=r"3 covariate features.*networks\.small_cnn does not read covariates.*"
                                         r"data/covariates=none"):
        build_network(net_cfg, 3)
    assert isinstance(build_network(net_cfg, 0), torch.nn.Module)  # without covariates it builds


def test_covariates_only_network_without_covariates_names_the_option():
    # Hydra wraps the network's ValueError, keeping its message.
    with pytest.raises(InstantiationException, match="needs covariates: choose a data/covariates option"):
        build_network(model_config("covariates_only"), 0)
