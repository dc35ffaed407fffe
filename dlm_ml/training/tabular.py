"""The fold loop for models without images (:mod:`dlm_ml.models.baselines`): the same folds, the
same fit / validation / test split of each fold as the networks get, the same recorded tables.

Per fold the model is built fresh from its config, fitted on the fit lesions only (its own
tuning runs inside them), and predicts the validation lesions (thresholds and calibration are
chosen there) and the test lesions (the out-of-fold predictions).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from dlm_ml.data.folds import fold_rows, held_out_folds
from dlm_ml.stats import roc_auc
from dlm_ml.training.cross_validation import CrossValidationResult, FoldResult
from dlm_ml.training.recorder import PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE, FoldRecorder, FoldRun
from dlm_ml.utils.atomic import atomic_write_json

log = logging.getLogger("dlm_ml.training")

MODEL_SUMMARY_FILE = "model_summary.json"


def cross_validate_tabular(cfg: DictConfig, lesions: pd.DataFrame, features: pd.DataFrame, folds: pd.DataFrame,
                           recorder: FoldRecorder, out_dir: str | Path) -> CrossValidationResult:
    """Fit ``cfg.model.estimator`` in every test fold of ``folds``.

    ``lesions``: ``patient_id, lesion_id, pcr``, one row per lesion; ``features``: the lesion
    features, row-aligned with ``lesions``. The validation split uses
    ``cfg.data.datamodule.val_fraction`` and ``.seed``: the networks' data module's split
    (:func:`~dlm_ml.data.folds.fold_rows`).
    """
    key = ["patient_id", "lesion_id"]
    mine, theirs = features[key].astype(str).to_numpy(), lesions[key].astype(str).to_numpy()
    if mine.shape != theirs.shape or not (mine == theirs).all():
        raise ValueError(f"lesion features ({len(mine)} rows) are not row-aligned with the {len(theirs)} lesions")
    results = []
    for fold in held_out_folds(folds):
        stored = recorder.finished_tables(fold)
        if stored is not None and {PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE} <= set(stored):
            results.append(FoldResult(fold, stored[PREDICTIONS_FILE], stored[VALIDATION_PREDICTIONS_FILE], reused=True))
            continue
        with recorder.open_fold(fold) as run:
            results.append(fit_fold(cfg, lesions, features, folds, fold, run, Path(out_dir) / f"fold_{fold}"))
    return CrossValidationResult(results)


def _table(lesions: pd.DataFrame, rows: np.ndarray, prob: np.ndarray, fold: int) -> pd.DataFrame:
    return lesions.iloc[rows][["patient_id", "lesion_id"]].assign(
        fold=fold, prob_pcr=prob.astype(float), pcr=lesions.pcr.to_numpy()[rows]).reset_index(drop=True)


def fit_fold(cfg: DictConfig, lesions: pd.DataFrame, features: pd.DataFrame, folds: pd.DataFrame, fold: int,
             run: FoldRun, fold_dir: Path) -> FoldResult:
    """Fit one fold's model on its fit lesions; predict validation and test lesions; record."""
    dm = cfg.data.datamodule
    fit_rows, val_rows, test_rows = fold_rows(lesions, folds, fold, float(dm.val_fraction), int(dm.seed))
    model = hydra.utils.instantiate(cfg.model.estimator)
    fit = features.iloc[fit_rows].reset_index(drop=True)
    model.fit(fit, lesions.pcr.to_numpy()[fit_rows], lesions.patient_id.astype(str).to_numpy()[fit_rows])
    validation = _table(lesions, val_rows, model.predict_proba(features.iloc[val_rows].reset_index(drop=True)), fold)
    test = _table(lesions, test_rows, model.predict_proba(features.iloc[test_rows].reset_index(drop=True)), fold)
    metrics = {"n_test_lesions": len(test), "n_val_lesions": len(validation), "n_fit_lesions": len(fit_rows)}
    if test.pcr.nunique() == 2:
        metrics["test_auc"] = roc_auc(test.pcr.to_numpy(), test.prob_pcr.to_numpy())
    run.log_metrics(metrics)
    run.log_table(test, PREDICTIONS_FILE)
    run.log_table(validation, VALIDATION_PREDICTIONS_FILE)
    fold_dir.mkdir(parents=True, exist_ok=True)
    summary = model.summary()
    if summary.get("tuned") is False:
        log.warning("fold %d: hyper-parameters not tuned (%s); the grid's middle point was used", fold,
                    summary.get("reason"))
    run.log_file(atomic_write_json(fold_dir / MODEL_SUMMARY_FILE, summary))
    log.info("fold %d: %d test lesions, test AUC %s; %s", fold, len(test), metrics.get("test_auc", "n/a"),
             json.dumps(summary.get("best_params", {})))
    return FoldResult(fold, test, validation)
