"""Hyper-parameter search by nested cross-validation (Optuna).

For every test fold of the validation design ("outer" fold) an Optuna study (TPE, seeded) scores
candidate settings by cross-validation on inner, patient-grouped folds made from that fold's
*training* patients only; the best candidate then trains on those patients exactly as
``dlm-train`` would (:func:`~dlm_ml.training.cross_validation.train_fold` or
:func:`~dlm_ml.training.tabular.fit_fold`) and predicts the outer test fold. No outer test
patient ever informs a choice, so the outer predictions together are an honest out-of-fold
estimate of the whole procedure, search included.

A candidate is the run's config with dotted keys replaced (``model.optimizer.lr``,
``model.estimator.c_grid``), so any model's settings can be searched and the existing fold
loops train it. Recording goes through a :class:`TuningRecorder` the caller hands in; this
module knows nothing of the tracking backend.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dlm_ml.data.covariates import LesionCovariates
from dlm_ml.data.folds import fold_rows, held_out_folds, make_folds
from dlm_ml.data.patches import PatchSet
from dlm_ml.stats import roc_auc
from dlm_ml.training.cross_validation import (
    CrossValidationResult,
    FoldResult,
    check_one_prediction_per_tested_lesion,
    cross_validate,
    train_fold,
)
from dlm_ml.training.recorder import FoldRun, MemoryFoldRecorder, MemoryFoldRun
from dlm_ml.training.tabular import cross_validate_tabular, fit_fold

log = logging.getLogger("dlm_ml.training")

#: Config prefixes a search may change. The inputs (patches, covariates, radiomics, the cohort,
#: the folds) are built once before the search, so keys that change them cannot be searched.
SEARCHABLE_PREFIXES = ("model.", "trainer.", "callbacks.", "data.datamodule.")
#: How a candidate is scored on its inner folds (higher is better).
METRICS = ("mean_fold_auc", "pooled_auc")
#: Table of one outer fold's trials: ``fold, trial, <searched keys>, inner_score,
#: inner_auc_fold_<j>..., state, duration_s``.
TRIALS_FILE = "trials.csv"
_KINDS = ("float", "int", "categorical")


class SearchConfigError(ValueError):
    """The ``search`` section asks for something that cannot be searched (the message names the key)."""


@dataclass(frozen=True)
class Dimension:
    """One searched config key. ``kind`` float or int: ``low``..``high`` (``log`` scale or
    ``step``); categorical: ``choices``. ``as_list``: the value goes into a one-element list
    (a model setting that takes a grid, e.g. ``model.estimator.c_grid``)."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    as_list: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))


def search_space(space: Mapping, cfg: DictConfig) -> list[Dimension]:
    """The dimensions of ``space`` (``{dotted key: {type, low, high, log, step, choices,
    as_list}}``, the ``search.space`` section), checked against ``cfg``: every key must exist in
    the config and lie under :data:`SEARCHABLE_PREFIXES`; errors name the key."""
    if not space:
        raise SearchConfigError("search.space is empty: name at least one config key to search "
                                "(e.g. search=network, or search.space={model.optimizer.lr: {type: float, ...}})")
    missing = object()
    dimensions = []
    for key, spec in space.items():
        key, where = str(key), f"search.space.{key}"
        if not key.startswith(SEARCHABLE_PREFIXES):
            raise SearchConfigError(f"{where}: only keys under {', '.join(SEARCHABLE_PREFIXES)} can be searched (the "
                                    "cohort, its inputs and the folds are built once, before the search)")
        if OmegaConf.select(cfg, key, default=missing, throw_on_missing=False) is missing:
            raise SearchConfigError(f"{where}: {key} is not a key of this config (model {_model_of(cfg)})")
        spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec or {})
        unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices", "as_list"})
        kind = spec.get("type")
        if unknown or kind not in _KINDS:
            raise SearchConfigError(f"{where}: type must be one of {_KINDS} (got {kind!r})"
                                    + (f"; unknown setting(s) {unknown}" if unknown else ""))
        dimension = Dimension(key, kind, spec.get("low"), spec.get("high"), bool(spec.get("log", False)),
                              spec.get("step"), tuple(spec.get("choices") or ()), bool(spec.get("as_list", False)))
        _check_dimension(dimension, where)
        dimensions.append(dimension)
    return dimensions


def _model_of(cfg: DictConfig) -> str:
    target = OmegaConf.select(cfg, "model.estimator._target_") or OmegaConf.select(cfg, "model.net._target_")
    return str(target)


def _check_dimension(d: Dimension, where: str) -> None:
    if d.kind == "categorical":
        if not d.choices or any(c is not None and not isinstance(c, (bool, int, float, str)) for c in d.choices):
            raise SearchConfigError(f"{where}: a categorical dimension needs choices, each a number, string, bool "
                                    "or null")
        return
    if d.low is None or d.high is None or not float(d.low) < float(d.high):
        raise SearchConfigError(f"{where}: a {d.kind} dimension needs low < high (got low={d.low}, high={d.high})")
    if d.log and (float(d.low) <= 0 or d.step is not None):
        raise SearchConfigError(f"{where}: a log-scale dimension needs low > 0 and no step")


def candidate_config(cfg: DictConfig, params: Mapping[str, Any], dimensions: list[Dimension]) -> DictConfig:
    """A copy of ``cfg`` with every searched key set to its value in ``params`` (wrapped in a
    one-element list for an ``as_list`` dimension); interpolations over those keys follow them."""
    candidate = copy.deepcopy(cfg)  # a shallow copy would share (and change) the nested nodes
    for d in dimensions:
        value = params[d.key]
        OmegaConf.update(candidate, d.key, [value] if d.as_list else value, merge=False)
    return candidate


@dataclass(frozen=True)
class SearchSettings:
    """The ``search`` section: trials per outer fold, inner folds, the score, seed, Optuna storage."""

    n_trials: int
    inner_folds: int
    metric: str = "mean_fold_auc"
    seed: int = 0
    storage: str = "memory"
    keep_trial_folders: bool = False

    @classmethod
    def from_config(cls, search: DictConfig) -> SearchSettings:
        settings = cls(int(search.n_trials), int(search.inner_folds), str(search.metric), int(search.seed),
                       str(search.storage), bool(search.get("keep_trial_folders", False)))
        if settings.n_trials < 1 or settings.inner_folds < 2:
            raise SearchConfigError(f"search.n_trials must be >= 1 and search.inner_folds >= 2 (got "
                                    f"{settings.n_trials}, {settings.inner_folds})")
        if settings.metric not in METRICS or settings.storage not in ("memory", "sqlite"):
            raise SearchConfigError(f"search.metric must be one of {METRICS} (got {settings.metric!r}) and "
                                    f"search.storage memory or sqlite (got {settings.storage!r})")
        return settings


@dataclass
class TuningData:
    """What the folds train on: ``lesions`` (``patient_id, lesion_id, pcr``) with, row-aligned,
    either lesion ``features`` (a tabular model) or ``patches`` (and ``covariates``) for a network."""

    lesions: pd.DataFrame
    features: pd.DataFrame | None = None
    patches: PatchSet | None = None
    covariates: LesionCovariates | None = None

    def subset(self, rows: np.ndarray) -> TuningData:
        """The lesions at ``rows`` (ascending row indices), every table cut alike."""
        def cut(table):
            return table.iloc[rows].reset_index(drop=True)

        patches = None if self.patches is None else replace(
            self.patches, image=self.patches.image[rows], present=self.patches.present[rows],
            lesions=cut(self.patches.lesions))
        covariates = None if self.covariates is None else replace(self.covariates, table=cut(self.covariates.table))
        return TuningData(cut(self.lesions), None if self.features is None else cut(self.features), patches,
                          covariates)

    def cross_validate(self, cfg: DictConfig, folds: pd.DataFrame, out_dir: Path) -> CrossValidationResult:
        """Every test fold of ``folds``, unrecorded (a candidate's inner cross-validation)."""
        if self.features is not None:
            return cross_validate_tabular(cfg, self.lesions, self.features, folds, MemoryFoldRecorder(), out_dir)
        return cross_validate(cfg, self.patches, folds, MemoryFoldRecorder(), out_dir, self.covariates)

    def fit_fold(self, cfg: DictConfig, folds: pd.DataFrame, fold: int, run: FoldRun, fold_dir: Path) -> FoldResult:
        """Test fold ``fold`` as dlm-train trains it: fit on its fit patients, predict validation and test."""
        if self.features is not None:
            return fit_fold(cfg, self.lesions, self.features, folds, fold, run, fold_dir)
        return train_fold(cfg, self.patches, folds, fold, run, fold_dir, self.covariates)


class TuningFoldRun(FoldRun, Protocol):
    """The record of one outer fold: a fold's record plus the study's trials and choice."""

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_trial(self, number: int, score: float) -> None:
        """One finished trial's inner score (a series over trial numbers)."""


class TuningRecorder(Protocol):
    def open_fold(self, fold: int) -> AbstractContextManager[TuningFoldRun]:
        """Open the outer fold's record; closed as finished when the block ends normally, failed when it raises."""


class MemoryTuningFoldRun(MemoryFoldRun):
    """An outer fold's record in memory (tests, notebooks)."""

    def __init__(self):
        super().__init__()
        self.params: dict[str, str] = {}
        self.trial_scores: dict[int, float] = {}

    def log_params(self, params: dict[str, str]) -> None:
        self.params.update(params)

    def log_trial(self, number: int, score: float) -> None:
        self.trial_scores[number] = score


class MemoryTuningRecorder:
    def __init__(self):
        self.runs: dict[int, MemoryTuningFoldRun] = {}

    def open_fold(self, fold: int) -> AbstractContextManager[MemoryTuningFoldRun]:
        self.runs[fold] = MemoryTuningFoldRun()
        return nullcontext(self.runs[fold])


@dataclass
class FoldChoice:
    """One outer fold's study: the chosen ``params`` (by searched key), their inner score and
    every trial (:data:`TRIALS_FILE` columns)."""

    fold: int
    params: dict[str, Any]
    inner_score: float
    trials: pd.DataFrame


@dataclass
class NestedCrossValidationResult:
    result: CrossValidationResult
    choices: list[FoldChoice]

    def chosen_table(self) -> pd.DataFrame:
        """One row per outer fold: ``fold, <searched keys>, inner_score, n_trials``."""
        return pd.DataFrame([{"fold": c.fold, **c.params, "inner_score": c.inner_score, "n_trials": len(c.trials)}
                             for c in self.choices])

    def trials_table(self) -> pd.DataFrame:
        return pd.concat([c.trials for c in self.choices], ignore_index=True)


def inner_score(result: CrossValidationResult, metric: str) -> tuple[float, dict[int, float]]:
    """The candidate's score on its inner folds and each inner fold's AUC (NaN where a fold's
    test lesions hold one outcome only). ``mean_fold_auc``: the mean over folds with both
    outcomes; ``pooled_auc``: the AUC of all inner out-of-fold predictions together."""
    per_fold = {}
    for f in result.folds:
        y = f.test.pcr.to_numpy()
        per_fold[f.fold] = roc_auc(y, f.test.prob_pcr.to_numpy()) if len(np.unique(y)) == 2 else math.nan
    if metric == "pooled_auc":
        pooled = result.predictions
        return roc_auc(pooled.pcr.to_numpy(), pooled.prob_pcr.to_numpy()), per_fold
    finite = [v for v in per_fold.values() if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else math.nan), per_fold


def nested_cross_validate(cfg: DictConfig, data: TuningData, folds: pd.DataFrame, dimensions: list[Dimension],
                          settings: SearchSettings, recorder: TuningRecorder,
                          out_dir: str | Path) -> NestedCrossValidationResult:
    """Search and train every outer test fold of ``folds`` (``patient_id, fold``).

    Per outer fold ``k``: the study's trials cross-validate candidates on inner folds of the
    fold's training patients (fold ``!= k``, development-only ones included) under
    ``out_dir/tuning/fold_k``; the best candidate trains into ``out_dir/fold_k`` and predicts
    the test fold. Returns the outer predictions (with validation tables, as dlm-train's) and
    each fold's choice.
    """
    out_dir = Path(out_dir)
    results, choices = [], []
    for fold in held_out_folds(folds):
        with recorder.open_fold(fold) as run:
            choice = tune_fold(cfg, data, folds, fold, dimensions, settings, run, out_dir)
            run.log_params({key: str(value) for key, value in choice.params.items()})
            run.log_metrics({"best_inner_score": choice.inner_score, "n_trials": len(choice.trials)})
            run.log_table(choice.trials, TRIALS_FILE)
            results.append(data.fit_fold(candidate_config(cfg, choice.params, dimensions), folds, fold, run,
                                         out_dir / f"fold_{fold}"))
        choices.append(choice)
    result = CrossValidationResult(results)
    check_one_prediction_per_tested_lesion(result.predictions, data.lesions, folds)
    return NestedCrossValidationResult(result, choices)


def outer_training_rows(cfg: DictConfig, lesions: pd.DataFrame, folds: pd.DataFrame, fold: int) -> np.ndarray:
    """Rows of ``lesions`` whose patients train outer fold ``fold`` (its fit and validation
    patients, :func:`~dlm_ml.data.folds.fold_rows`): every lesion not of the test fold."""
    dm = cfg.data.datamodule
    fit, validation, _ = fold_rows(lesions, folds, fold, float(dm.val_fraction), int(dm.seed))
    return np.sort(np.concatenate([fit, validation]))


def tune_fold(cfg: DictConfig, data: TuningData, folds: pd.DataFrame, fold: int, dimensions: list[Dimension],
              settings: SearchSettings, run: TuningFoldRun, out_dir: Path) -> FoldChoice:
    """Optuna study of outer fold ``fold``; returns the best trial's parameters."""
    inner = data.subset(outer_training_rows(cfg, data.lesions, folds, fold))
    seed = settings.seed + fold
    inner_folds = make_folds(inner.lesions, settings.inner_folds, seed)
    work_dir = out_dir / "tuning" / f"fold_{fold}"
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out_dir / 'optuna.db'}" if settings.storage == "sqlite" else None
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                storage=storage, study_name=f"fold_{fold}")

    def objective(trial: optuna.Trial) -> float:
        params = {d.key: d.suggest(trial) for d in dimensions}
        trial_dir = work_dir / f"trial_{trial.number}"
        result = inner.cross_validate(candidate_config(cfg, params, dimensions), inner_folds, trial_dir)
        if not settings.keep_trial_folders:
            shutil.rmtree(trial_dir, ignore_errors=True)
        score, per_fold = inner_score(result, settings.metric)
        if not math.isfinite(score):
            raise ValueError(f"outer fold {fold}: no inner fold of its {inner.lesions.patient_id.nunique()} training "
                             f"patients holds both outcomes, so no candidate can be scored; use fewer inner folds")
        trial.set_user_attr("inner_auc_fold", {str(k): v for k, v in per_fold.items()})
        run.log_trial(trial.number, score)
        log.info("outer fold %d, trial %d: %s -> inner %s %.4f", fold, trial.number, params, settings.metric, score)
        return score

    study.optimize(objective, n_trials=settings.n_trials)
    best = study.best_trial
    return FoldChoice(fold, {d.key: best.params[d.key] for d in dimensions}, float(best.value),
                      _trials_table(study, fold, dimensions))


def _trials_table(study: optuna.Study, fold: int, dimensions: list[Dimension]) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        per_fold = t.user_attrs.get("inner_auc_fold", {})
        duration = t.duration.total_seconds() if t.duration is not None else math.nan
        rows.append({"fold": fold, "trial": t.number, **{d.key: t.params.get(d.key) for d in dimensions},
                     "inner_score": t.value, **{f"inner_auc_fold_{k}": v for k, v in per_fold.items()},
                     "state": t.state.name, "duration_s": duration})
    return pd.DataFrame(rows)
