"""Where the Hydra configuration lives, and the resolvers it uses.

The configuration ships inside the package (``dlm_ml/conf``), so a wheel installed with
``pip install .`` finds it as an editable checkout does.

Resolvers:

``dlm_channels``, ``dlm_patch_voxels``
    the input channels and the patch edge in voxels a network is built for.
``dlm_cwd``
    the folder the command was started in. ``${hydra:runtime.cwd}`` is unset while a multirun
    resolves its sweep folder (before any job runs), so ``paths.root_dir`` uses this instead;
    ``hydra.job.chdir`` is false, so a job's working folder stays the one it was started in.
``dlm_unique``
    a suffix of the run and sweep folders that no two processes share (``<pid>-<6 hex>``):
    folders are named to the second, and two commands started within the same second (a
    cluster array job) would otherwise share one and continue each other's folds. Stable within
    a process, and cached in the config it is resolved in, so the jobs of a joblib sweep (other
    processes, handed the launcher's config) resolve the sweep's folder as it did.
``dlm_synthetic_cohort``
    the folder name of the synthetic cohort of a preset, patient count (null: the preset's) and
    seed, ``synthetic_<preset>_n<N>_seed<S>``; an unquoted ``null`` preset is the preset named null.
``dlm_config_groups``, ``dlm_command_summary``
    the config groups a command takes (those its primary config names in its defaults list,
    with their nested groups) and their options, and the primary config's leading comment,
    for the command's ``--help``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import yaml
from omegaconf import OmegaConf

import dlm_ml
from dlm_ml.data.patches import patch_voxels
from dlm_ml.data.synthetic import cohort_folder_name

CONF_DIR = Path(dlm_ml.__file__).resolve().parent / "conf"


def _channels(timepoints, modalities) -> int:
    return len(timepoints) * len(modalities)


def _cwd() -> str:
    return os.getcwd()


_run_suffix: dict[int, str] = {}


def _unique() -> str:
    """``<pid>-<6 random hex digits>``, the same every time within one process. The pid keeps
    concurrent processes of one machine apart, the random digits those of different machines
    sharing a file system (and a process forked from one that had resolved it gets its own)."""
    pid = os.getpid()
    if pid not in _run_suffix:
        _run_suffix[pid] = f"{pid}-{secrets.token_hex(3)}"
    return _run_suffix[pid]


def _synthetic_cohort(preset, n_patients, seed) -> str:
    try:
        return cohort_folder_name(preset, n_patients, seed)
    except KeyError as err:  # OmegaConf shows a KeyError's message quoted; say it plainly
        raise ValueError(f"data.synthetic.preset: {err.args[0]}") from None


def _defaults_groups(config_name: str) -> list[str]:
    """Groups named in the defaults list of ``CONF_DIR/<config_name>.yaml`` (``hydra`` left out)."""
    entries = (yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text()) or {}).get("defaults", [])
    groups = []
    for entry in entries:
        if isinstance(entry, str):
            # A primary config that extends another (tune.yaml: `- train`) takes that one's groups too.
            if entry != "_self_" and (CONF_DIR / f"{entry}.yaml").is_file():
                groups += [g for g in _defaults_groups(entry) if g not in groups]
            continue
        for key in entry:
            group = str(key).removeprefix("override ").removeprefix("optional ").strip().lstrip("/")
            group = group.split("@", 1)[0]
            if group != "hydra" and group not in groups:
                groups.append(group)
    return groups


def config_groups(config_name: str) -> dict[str, list[str]]:
    """Config group → its options, for every group the command ``config_name`` takes, nested
    groups (``data/patches``) included."""
    taken = _defaults_groups(config_name)
    out: dict[str, list[str]] = {}
    for folder in sorted(p for p in CONF_DIR.rglob("*") if p.is_dir()):
        group = folder.relative_to(CONF_DIR).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and any(group == t or group.startswith(t + "/") for t in taken):
            out[group] = options
    return out


def _config_groups_text(config_name: str) -> str:
    return "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups(config_name).items())


def _command_summary(config_name: str) -> str:
    """The comment block that opens ``CONF_DIR/<config_name>.yaml``, without the ``#``."""
    lines = []
    for line in (CONF_DIR / f"{config_name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return "\n".join(lines)


for _name, _resolver in (("dlm_channels", _channels), ("dlm_patch_voxels", patch_voxels), ("dlm_cwd", _cwd),
                         ("dlm_synthetic_cohort", _synthetic_cohort), ("dlm_config_groups", _config_groups_text),
                         ("dlm_command_summary", _command_summary)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
if not OmegaConf.has_resolver("dlm_unique"):
    # use_cache: Hydra copies a config's resolver cache into each job's config (load_sweep_config),
    # and joblib hands that config to its worker processes, where _unique would give another value.
    OmegaConf.register_new_resolver("dlm_unique", _unique, use_cache=True)
