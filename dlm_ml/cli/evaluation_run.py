"""Evaluating predictions into a tracked run: the one sequence dlm-train, dlm-evaluate and dlm-predict share."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from dlm_ml.evaluation.evaluate import Evaluation, evaluate
from dlm_ml.tracking import train_runs
from dlm_ml.utils.timing import stage


def evaluate_into_run(client, run_id: str, predictions: pd.DataFrame, cohort, thresholds: pd.DataFrame | None,
                      out_dir: str | Path, *, evaluation_cfg: DictConfig, header: dict,
                      model_name: str) -> Evaluation:
    """Evaluate ``predictions`` against ``cohort``'s readers (settings: the ``evaluation`` config
    group), write the report under ``out_dir``, log metrics, counts and files to ``run_id`` and
    print the headline table."""
    with stage("evaluation"):
        evaluation = evaluate(predictions, cohort, thresholds, Path(out_dir), settings=hydra.utils.instantiate(
            evaluation_cfg), header=header, model_name=model_name)
        train_runs.log_evaluation(client, run_id, evaluation)
    print(evaluation.table_text)
    return evaluation
