"""dlm-train: patient-grouped K-fold training, out-of-fold predictions, evaluation, MLflow tracking."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.training.cross_validation import train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("PYTHONHASHSEED", str(cfg.seed))
    result = train(cfg)
    evaluation = result.get("evaluation")
    return None if evaluation is None else evaluation.metrics.get("model_auc")


if __name__ == "__main__":
    main()
