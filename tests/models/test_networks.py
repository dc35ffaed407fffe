"""Every model option of the composed default config builds and runs on the default patch."""

from __future__ import annotations

import functools

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.patches import patch_voxels
from dlm_ml.models.build import build_network
from dlm_ml.models.module import PCRClassifier
from dlm_ml.models.networks import densenet
from tests.model_options import NETWORK_OPTIONS


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_every_model_option_is_tested():
    assert {"small_cnn", "resnet10", "densenet121", "longitudinal"} <= set(NETWORK_OPTIONS)


@pytest.mark.parametrize("model", NETWORK_OPTIONS)
def test_model_runs_on_default_patch(model):
    cfg = _compose(f"model={model}")
    edge = patch_voxels(cfg.data.patches.patch_size_mm, cfg.data.patches.spacing_mm)
    channels = len(cfg.data.patches.timepoints) * len(cfg.data.patches.modalities)
    torch.manual_seed(0)
    n_covariates = 3 if "n_covariates" in cfg.model.net else 0  # a covariate-reading net gets a fold's width
    net = build_network(cfg.model.net, n_covariates)
    module = hydra.utils.instantiate(cfg.model.module)(
        net=net, optimizer=hydra.utils.instantiate(cfg.model.optimizer),
        scheduler=hydra.utils.instantiate(cfg.model.scheduler), pos_weight=2.0)
    module.eval()
    with torch.no_grad():
        logits = module(torch.randn(2, channels, edge, edge, edge), torch.ones(2, channels, dtype=torch.bool),
                        torch.randn(2, n_covariates))
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.AdamW)
    assert isinstance(config["lr_scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)


def test_default_patch_is_below_the_imagenet_stem_minimum():
    """The reason densenet needs its small-input stem by default: 20 voxels < 32."""
    cfg = _compose("model=densenet121")
    assert patch_voxels(cfg.data.patches.patch_size_mm, cfg.data.patches.spacing_mm) < 32
    with pytest.raises(ValueError, match="must be >= 32"):
        densenet(4, 20, stem="imagenet")


def test_densenet_stem_choice():
    small = densenet(4, 20)
    assert small.net.features.conv0.stride == (1, 1, 1) and isinstance(small.net.features.pool0, torch.nn.Identity)
    large = densenet(4, 32)
    assert large.net.features.conv0.stride == (2, 2, 2)
    with pytest.raises(ValueError, match="must be >= 8"):
        densenet(4, 6)


def test_optimizer_and_schedule_match_the_previous_numerics():
    """Default model: AdamW lr 1e-3, weight decay 1e-4, cosine over trainer.max_epochs, per epoch."""
    cfg = _compose()
    module = PCRClassifier(torch.nn.Linear(3, 1), optimizer=hydra.utils.instantiate(cfg.model.optimizer),
                           scheduler=hydra.utils.instantiate(cfg.model.scheduler))
    config = module.configure_optimizers()
    group = config["optimizer"].param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-3, 1e-4)
    assert config["lr_scheduler"].T_max == cfg.trainer.max_epochs == 40
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.AdamW(torch.nn.Linear(3, 1).parameters(), lr=1e-3, weight_decay=1e-4), T_max=40)
    assert config["lr_scheduler"].get_last_lr() == reference.get_last_lr()
    assert isinstance(hydra.utils.instantiate(cfg.model.optimizer), functools.partial)
