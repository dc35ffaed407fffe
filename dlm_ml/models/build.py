"""Building a configured network, and what a built network can do without some of its inputs."""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig, OmegaConf


def build_network(net_cfg: DictConfig | dict, n_covariates: int) -> torch.nn.Module:
    """The configured network; one that reads covariates declares ``n_covariates`` in its config and
    gets the fold's encoded width here. Covariates given to a network that cannot read them are
    refused rather than silently ignored."""
    if isinstance(net_cfg, dict):
        net_cfg = OmegaConf.create(net_cfg)
    if "n_covariates" in net_cfg:
        return hydra.utils.instantiate(net_cfg, n_covariates=n_covariates)
    if n_covariates:
        raise ValueError(f"data.covariates selects {n_covariates} covariate features but the network "
                         f"{net_cfg.get('_target_')} does not read covariates; choose a model that does "
                         "(e.g. model=longitudinal) or data/covariates=none")
    return hydra.utils.instantiate(net_cfg)


def handles_missing_images(net: torch.nn.Module) -> bool:
    """Whether ``net`` reads the present flags, so that a missing image is information rather than a
    zero-filled channel it would mistake for tissue. A network class declares it with a class
    attribute ``handles_missing_images = True``; none that does not say so is assumed to."""
    return bool(getattr(net, "handles_missing_images", False))


def without_start_weights(net_cfg: dict) -> dict:
    """``net_cfg`` with every ``weights`` entry (a starting-weights file of an encoder) set to None:
    a trained network's own weights replace them, and the file need not exist where it is rebuilt."""
    if isinstance(net_cfg, dict):
        return {k: (None if k == "weights" else without_start_weights(v)) for k, v in net_cfg.items()}
    if isinstance(net_cfg, list):
        return [without_start_weights(v) for v in net_cfg]
    return net_cfg
