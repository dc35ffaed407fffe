"""Every command's configuration composes with every option of every config group it takes, resolves,
and builds: each node with a ``_target_`` (partials included) is instantiated.

The commands, groups and options are read from the package's conf folder (``dlm_ml/conf``), so a
new option is tested the moment it is added.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from dlm_ml.cli.config import CONF_DIR, config_groups
from dlm_ml.training.cross_validation import split_trainer_config

COMMANDS = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
#: Groups that live inside an option of another group and are chosen at a package: how to select them.
NESTED_GROUPS = {"model/encoder": ["model=longitudinal", "model/encoder@model.net.encoder={option}"]}


def _overrides(group: str | None, option: str | None) -> list[str]:
    if group is None:
        return []
    if group in NESTED_GROUPS:
        return [o.format(option=option) for o in NESTED_GROUPS[group]]
    return [f"{group}={option}"]
CASES = [(command, None, None) for command in COMMANDS] + [
    (command, group, option) for command in COMMANDS
    for group, options in config_groups(command).items() for option in options]


def compose_command(command: str, overrides: list[str] = ()) -> DictConfig:
    """The config a command composes with ``overrides`` (its hydra node left out)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=command, overrides=list(overrides))
    return cfg


def _targets(node, path: str = ""):
    """(dotted path, node) of the outermost nodes holding a ``_target_`` (nested ones are built by
    instantiate along with them)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
            return
        for key in node:
            yield from _targets(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node._iter_ex(resolve=False)):
            yield from _targets(item, f"{path}[{i}]")


def _buildable_here(node: DictConfig) -> DictConfig:
    """An ``accelerator`` this machine lacks (a GPU trainer on a CPU-only machine) is replaced by the
    CPU so the rest of the node is still checked."""
    if node.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        node = node.copy()
        with open_dict(node):
            node.accelerator = "cpu"
    return node


@pytest.mark.parametrize(("command", "group", "option"), CASES,
                         ids=[f"{c}" if g is None else f"{c}-{g}={o}" for c, g, o in CASES])
def test_every_group_option_composes_resolves_and_instantiates(command, group, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLM_ML_ROOT", raising=False)
    cfg = compose_command(command, _overrides(group, option))
    # output_dir and the fold jobs' folder come from Hydra's runtime, which only a launched job has
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        if "fold_jobs_dir" in cfg.paths:
            cfg.paths.fold_jobs_dir = str(tmp_path / "fold_jobs")
    OmegaConf.resolve(cfg)  # every interpolation and resolver of the composed config
    built = {}
    for path, node in _targets(cfg):
        # A network that reads covariates gets their width from the fold's fitted encoder.
        extra = {"n_covariates": 3} if "n_covariates" in node else {}
        if path == "trainer":  # its speed switches go to the module, as the fold loop passes them
            node = split_trainer_config(node)[0]
        obj = instantiate(_buildable_here(node), **extra)
        assert obj is not None and not isinstance(obj, DictConfig), path
        built[path] = obj
    if command == "train":
        assert {"data.patches", "data.registration", "data.datamodule"} <= set(built)
        assert isinstance(built["data.datamodule"], partial)


def test_groups_listed_for_a_command_are_those_it_composes():
    # dlm-preprocess takes no model, trainer or experiment; dlm-train does
    assert {"data", "data/patches", "data/registration", "paths", "logger"} <= set(config_groups("preprocess"))
    assert not {"model", "trainer", "experiment", "synthetic"} & set(config_groups("preprocess"))
    assert {"model", "trainer", "experiment", "data/registration"} <= set(config_groups("train"))
    assert "synthetic" not in config_groups("train")  # preset files, not a Hydra group
