"""The options of the ``model`` config group, split by what they configure: a network (``net``)
or a baseline (``estimator``). Read from the YAML files, so a new option is tested at once."""

from __future__ import annotations

import yaml

from dlm_ml.cli.config import CONF_DIR


def _options_with(key: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if key in (yaml.safe_load(p.read_text()) or {}))


NETWORK_OPTIONS = _options_with("net")
BASELINE_OPTIONS = _options_with("estimator")
