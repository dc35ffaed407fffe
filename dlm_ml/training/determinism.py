"""Seeding and determinism switches, applied before anything random is built."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from monai.utils import set_determinism


def seed_everything(seed: int, deterministic: bool | str | None = True) -> bool:
    """Seed Python, NumPy, torch and MONAI with ``seed`` and choose deterministic algorithms the
    way ``pl.Trainer(deterministic=...)`` will (``True``, ``False`` or ``"warn"``), so what is
    recorded before training is what training runs with. Returns whether torch's deterministic
    algorithms are now enabled."""
    pl.seed_everything(seed, workers=True, verbose=False)
    set_determinism(seed=seed)
    if deterministic == "warn":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif deterministic is not None:  # None: Lightning leaves torch's setting alone, so do we
        torch.use_deterministic_algorithms(bool(deterministic))
    return torch.are_deterministic_algorithms_enabled()
