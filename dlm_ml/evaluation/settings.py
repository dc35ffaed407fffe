"""Settings of one evaluation, built by ``hydra.utils.instantiate(cfg.evaluation)``.

The defaults live in one place only, ``dlm_ml/conf/evaluation/default.yaml``;
:func:`load_settings` reads that file for callers outside Hydra (tests, notebooks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

DEFAULT_SETTINGS_FILE = Path(__file__).resolve().parents[1] / "conf" / "evaluation" / "default.yaml"


@dataclass(frozen=True)
class EvaluationSettings:
    """How an evaluation computes its intervals and curves.

    Attributes
    ----------
    n_boot : int — patient-bootstrap replicates (every bootstrap interval and the ROC band).
    alpha : float — 1 − confidence level of every interval.
    seed : int — bootstrap seed.
    decision_thresholds : mapping with ``start``, ``stop``, ``step`` (inclusive grid of threshold
        probabilities of P(pCR) for the decision curves), or a sequence of thresholds in (0, 1).
    reliability_bins : int — quantile bins of the reliability diagram.
    """

    n_boot: int
    alpha: float
    seed: int
    decision_thresholds: Mapping | tuple
    reliability_bins: int

    def __post_init__(self):
        problems = []
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 2:
            problems.append(f"n_boot must be an integer >= 2, got {self.n_boot!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            problems.append(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if isinstance(self.reliability_bins, bool) or not isinstance(self.reliability_bins, int) \
                or self.reliability_bins < 1:
            problems.append(f"reliability_bins must be an integer >= 1, got {self.reliability_bins!r}")
        try:
            grid = _grid(self.decision_thresholds)
        except (TypeError, ValueError, KeyError) as exc:
            problems.append(f"decision_thresholds: {exc}")
        else:
            object.__setattr__(self, "decision_thresholds", tuple(float(t) for t in grid))
        if problems:
            raise ValueError("evaluation settings: " + "; ".join(problems))

    @property
    def threshold_grid(self) -> np.ndarray:
        """Decision-curve threshold probabilities, shape [k]."""
        return np.asarray(self.decision_thresholds, dtype=float)


def _grid(spec) -> np.ndarray:
    if isinstance(spec, Mapping):
        start, stop, step = (float(spec[k]) for k in ("start", "stop", "step"))
        if step <= 0 or stop < start:
            raise ValueError(f"need start <= stop and step > 0, got {dict(spec)}")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        grid = np.round(start + step * np.arange(n), 10)  # 0.05 + 2·0.05 is 0.15, not 0.15000000000000002
    else:
        grid = np.asarray(list(spec), dtype=float)
    if grid.size == 0 or np.any((grid <= 0) | (grid >= 1)):
        raise ValueError(f"thresholds must lie in (0, 1), got {grid.tolist()}")
    return grid


def load_settings(*, seed: int, path: str | Path = DEFAULT_SETTINGS_FILE, **overrides) -> EvaluationSettings:
    """The settings of ``path`` (default: the shipped ``evaluation/default.yaml``) with ``seed``
    in place of ``${seed}`` and any field replaced by ``overrides``."""
    values = yaml.safe_load(Path(path).read_text())
    values.pop("_target_", None)
    values.update(seed=seed, **overrides)
    return EvaluationSettings(**values)
