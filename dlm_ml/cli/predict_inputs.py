"""What dlm-predict predicts from: the source run's preprocessing (never the command's own defaults),
checked against what the command line asked, applied to a cohort that may have no outcomes."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from dlm_ml.data.cohort import validate_cohort
from dlm_ml.data.patches import PatchSet, build_patches
from dlm_ml.data.registration import registration_config_from_cfg

log = logging.getLogger("dlm_ml.predict")

#: The config blocks that decide how a cohort's images become model inputs.
PREPROCESSING_BLOCKS: tuple[str, ...] = ("data.patches", "data.registration", "data.covariates")
#: Leaves inside them that change how fast, not what: free to differ from the run's.
_SPEED_ONLY = ("workers", "threads_per_worker")


def preprocessing_differences(cfg: DictConfig, run_cfg: dict, overrides: list[str]) -> list[str]:
    """Each preprocessing key the command line set (``data.patches.patch_size_mm=50``, or a group
    option such as ``data/registration=...``) whose value differs from the run's, as
    ``key: the run used X, asked Y``."""
    run = OmegaConf.create(run_cfg)
    problems = []
    for override in overrides:
        dotted = override.lstrip("+~").split("=", 1)[0].replace("/", ".")
        block = next((b for b in PREPROCESSING_BLOCKS if dotted == b or dotted.startswith(b + ".")), None)
        if block is None:
            continue
        asked, used = OmegaConf.select(cfg, dotted), OmegaConf.select(run, dotted)
        asked_leaves = _leaves(dotted, asked)
        used_leaves = _leaves(dotted, used)
        for key in sorted(set(asked_leaves) | set(used_leaves)):
            if key.rsplit(".", 1)[-1] in _SPEED_ONLY:
                continue
            if not _same(asked_leaves.get(key), used_leaves.get(key)):
                problems.append(f"{key}: the run used {used_leaves.get(key, '(not set)')}, "
                                f"asked {asked_leaves.get(key, '(not set)')}")
    return problems


def _leaves(prefix: str, value) -> dict:
    """``{"data.patches.spacing_mm": 2.0, ...}`` of a block or a single value (absent: ``{}``)."""
    if value is None:
        return {}
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        leaves = {}
        for key, item in value.items():
            leaves.update(_leaves(f"{prefix}.{key}", item) if isinstance(item, dict) else {f"{prefix}.{key}": item})
        return leaves
    return {prefix: value}


def _same(a, b) -> bool:
    """Equal values; numbers by value (a run's ``32`` is the ``32.0`` asked)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def prediction_cohort(cohort_dir: str):
    """The cohort validated for prediction (outcomes and readings optional); a clean error listing
    every problem otherwise."""
    report, cohort = validate_cohort(cohort_dir, require_outcomes=False)
    report.raise_if_errors()
    for line in report.summary().splitlines():
        log.info(line)
    return cohort


def run_patches(run_cfg: dict, cohort, cache_dir: str, workers: int) -> PatchSet:
    """Every lesion's patches, made with the run's patch and registration settings (registration
    workers from this machine's ``workers``; they do not change the result)."""
    data = OmegaConf.create(run_cfg["data"])
    patch_config = hydra.utils.instantiate(data.patches)
    if data.get("registration") is not None and "workers" in data.registration:
        data.registration.workers = int(workers)
    return build_patches(cohort, patch_config, cache_dir, num_workers=int(workers), log=log.info,
                         registration=registration_config_from_cfg(data), all_lesions=True)
