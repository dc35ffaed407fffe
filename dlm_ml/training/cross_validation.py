"""The fold loop: per fold, train on the fit patients, choose the best epoch on the validation
patients, predict the validation and test lesions.

Recording goes through a :class:`~dlm_ml.training.recorder.FoldRecorder` the caller hands in,
so this module knows nothing of the tracking backend. A fold that finished in an earlier,
interrupted session is rebuilt from its stored tables; the interrupted fold continues from its
``resume/last.ckpt``. Only a resumed run does: a run that is not resuming refuses a fold folder
that already holds anything (another run's), rather than continue that run's training.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from dlm_ml.data.covariates import LesionCovariates
from dlm_ml.data.folds import held_out_folds
from dlm_ml.data.patches import PatchSet
from dlm_ml.models.build import build_network
from dlm_ml.models.callbacks import SeedEachEpoch, epochs_in_resume_checkpoint, resume_checkpoint
from dlm_ml.models.ensemble import save_fold_predictor
from dlm_ml.stats import roc_auc
from dlm_ml.training.determinism import seed_everything
from dlm_ml.training.recorder import (
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    FoldRecorder,
    FoldRun,
    MemoryFoldRun,
)
from dlm_ml.utils.parallel import parallel_map, pool_size
from dlm_ml.utils.signals import raise_if_sigterm_received
from dlm_ml.utils.timing import PARALLEL_FOLDS_STAGE, stage

log = logging.getLogger("dlm_ml.training")

#: Each fold's folder for its network weights and covariate encoding (models.ensemble.save_fold_predictor).
PREDICTOR_DIR = "predictor"
#: Created exclusively in a fold's folder by the run that trains the fold first (claim_fold_folder):
#: who claimed it (process, host, time).
FOLD_CLAIM_FILE = "claimed_by.txt"


@dataclass
class FoldResult:
    """Predictions of one fold, both tables with the columns of
    :data:`dlm_ml.data.cohort.schema.PREDICTION_COLUMNS`, one row per lesion.

    ``test``: the fold's own (held-out) lesions. ``validation``: the training-side lesions
    held out for early stopping, checkpoint choice and thresholds; never a test patient.
    ``reused``: the fold finished in an earlier session and was read back, not trained.
    """

    fold: int
    test: pd.DataFrame
    validation: pd.DataFrame
    reused: bool = False


@dataclass
class CrossValidationResult:
    folds: list[FoldResult]

    @property
    def predictions(self) -> pd.DataFrame:
        """Out-of-fold predictions: every lesion of a tested patient once, sorted by (patient, lesion)."""
        table = pd.concat([f.test for f in self.folds])
        return table.sort_values(["patient_id", "lesion_id"]).reset_index(drop=True)


def cross_validate(cfg: DictConfig, patches: PatchSet, folds: pd.DataFrame, recorder: FoldRecorder,
                   out_dir: str | Path, covariates: LesionCovariates | None = None, *,
                   resuming: bool = False, only_fold: int | None = None,
                   fold_workers: int = 1) -> CrossValidationResult:
    """Train every test fold of ``folds`` (``patient_id, fold``) on ``patches``.

    The test folds are those the table holds (:func:`~dlm_ml.data.folds.held_out_folds`, every
    fold ``>= 0``): K of them for K-fold or leave-one-site-out, one for an external validation,
    whose development patients (:data:`~dlm_ml.data.folds.DEVELOPMENT_ONLY`) train in every
    fold and are never predicted. ``cfg`` is the train config (``seed``, ``data.datamodule``,
    ``model``, ``callbacks``, ``trainer``); each fold writes under ``out_dir/fold_<k>``.
    ``covariates``: the raw covariates of every lesion, encoded per fold on its fit lesions.
    ``resuming``: this run continues an interrupted one in ``out_dir``, so a fold continues from
    the ``resume/last.ckpt`` it finds; otherwise a fold folder that already holds anything is
    refused (:func:`claim_fold_folder`).
    ``only_fold``: train (or read back) that test fold alone, as one fold job of a run whose folds
    run as separate jobs; the result then holds that fold's predictions only.
    ``fold_workers``: folds trained at once, each in its own process with its share of torch's
    threads (:func:`train_folds_in_processes`).
    """
    results: dict[int, FoldResult] = {}
    to_train = []
    for fold in folds_to_run(folds, only_fold):
        stored = recorder.finished_tables(fold)
        if stored is not None:
            results[fold] = _reused_fold(fold, stored)
            log.info("fold %d: finished in an earlier session, its predictions reused", fold)
        else:
            to_train.append(fold)
    if pool_size(fold_workers, len(to_train)) > 1:
        results.update(train_folds_in_processes(cfg, patches, folds, to_train, recorder, out_dir, covariates,
                                                resuming=resuming, workers=fold_workers))
        raise_if_sigterm_received()
    for fold in to_train:
        if fold in results:
            continue
        with recorder.open_fold(fold) as run:
            results[fold] = train_fold(cfg, patches, folds, fold, run, Path(out_dir) / f"fold_{fold}", covariates,
                                       resuming=resuming)
        # A SIGTERM whose interrupt a finaliser swallowed ends the run here, before the next fold
        # (inside a fit Lightning's own SIGTERM flag already stops training).
        raise_if_sigterm_received()
    result = CrossValidationResult([results[fold] for fold in folds_to_run(folds, only_fold)])
    if only_fold is None:
        check_one_prediction_per_tested_lesion(result.predictions, patches.lesions, folds)
    return result


@dataclass
class _FoldJob:
    """What a worker process needs to train one fold (everything picklable; ``cfg`` resolved)."""

    cfg: dict
    patches: PatchSet
    folds: pd.DataFrame
    fold: int
    recorder: FoldRecorder
    fold_dir: Path
    covariates: LesionCovariates | None
    resuming: bool


#: The parts of the train config a fold reads (train_fold): resolved in the parent, where every
#: interpolation and resolver is available, and handed to the workers as plain data.
FOLD_CONFIG_KEYS = ("seed", "trainer", "model", "callbacks")


def _fold_config(cfg: DictConfig) -> dict:
    out = {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
           for key in FOLD_CONFIG_KEYS if key in cfg}
    out["data"] = {"datamodule": OmegaConf.to_container(cfg.data.datamodule, resolve=True)}
    return out


def train_folds_in_processes(cfg: DictConfig, patches: PatchSet, folds: pd.DataFrame, to_train: list[int],
                             recorder: FoldRecorder, out_dir: str | Path, covariates: LesionCovariates | None,
                             *, resuming: bool, workers: int) -> dict[int, FoldResult]:
    """Train the folds ``to_train`` in a pool of ``workers`` processes (started by spawn), each
    fold opening its own record through ``recorder`` (which must be picklable, as the MLflow one
    is) and exactly as :func:`train_fold` does in one process.

    Why processes: a fold's small 3-D convolutions and its per-lesion augmentation use a second
    thread poorly, so on a laptop's cores several folds of one thread each finish sooner than the
    same folds one after the other with every thread (docs/benchmarks.md, Demo stages). Each
    worker gets ``torch.get_num_threads() // workers`` threads (at least 1): more threads than
    cores starve each other. A fold's predictions depend on its thread count (the order of float
    sums), not on the other folds: they equal those of the one-process loop run with that many
    threads. Refused with a data-parallel trainer (several processes per fold already).

    A fold that fails fails its record and is raised here; a stop of this process kills the
    workers (their records stay unfinished and are trained again by a resumed run)."""
    devices = cfg.trainer.get("devices", 1)
    if cfg.trainer.get("strategy") is not None or (isinstance(devices, int) and devices > 1):
        raise ValueError(f"fold_workers={workers} with a data-parallel trainer (devices={devices}): choose one, "
                         f"several processes per fold or several folds at once")
    fold_cfg = _fold_config(cfg)
    jobs = [_FoldJob(fold_cfg, patches, folds, fold, recorder, Path(out_dir) / f"fold_{fold}", covariates, resuming)
            for fold in to_train]
    n_workers = pool_size(workers, len(jobs))
    threads = max(1, torch.get_num_threads() // n_workers)
    log.info("training folds %s in %d processes of %d torch thread(s)", to_train, n_workers, threads)
    with stage(PARALLEL_FOLDS_STAGE):
        done = parallel_map(_train_fold_job, jobs, workers=workers, desc="folds", unit="fold", progress=False,
                            initializer=_fold_worker_start,
                            initargs=(threads, log.getEffectiveLevel()))
    results = {}
    for job, (result, memory_run) in zip(jobs, done):
        if memory_run is not None:  # a record kept in memory lived in the worker: bring it back
            recorder.runs[job.fold] = memory_run
        results[job.fold] = result
    return results


def _fold_worker_start(torch_threads: int, log_level: int) -> None:
    torch.set_num_threads(torch_threads)
    logging.basicConfig(level=log_level, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")


def _train_fold_job(job: _FoldJob) -> tuple[FoldResult, MemoryFoldRun | None]:
    with job.recorder.open_fold(job.fold) as run:
        result = train_fold(OmegaConf.create(job.cfg), job.patches, job.folds, job.fold, run, job.fold_dir,
                            job.covariates, resuming=job.resuming)
    return result, run if isinstance(run, MemoryFoldRun) else None


def folds_to_run(folds: pd.DataFrame, only_fold: int | None) -> list[int]:
    """Every test fold of ``folds``, or ``[only_fold]``, refused naming the test folds when the
    table has no such test fold."""
    tested = held_out_folds(folds)
    if only_fold is None:
        return tested
    if only_fold not in tested:
        raise ValueError(f"data.fold={only_fold}: the validation design has no such test fold; its test folds "
                         f"are {tested}")
    return [only_fold]


def check_one_prediction_per_tested_lesion(predictions: pd.DataFrame, lesions: pd.DataFrame,
                                           folds: pd.DataFrame) -> None:
    """Every lesion of a tested patient (fold ``>= 0``) has exactly one out-of-fold prediction,
    and no other lesion (a development-only patient's) has one."""
    key = ["patient_id", "lesion_id"]
    tested = set(folds.patient_id[folds.fold >= 0].astype(str))
    expected = set(map(tuple, lesions[lesions.patient_id.astype(str).isin(tested)][key].astype(str).to_numpy()))
    keys = Counter(map(tuple, predictions[key].astype(str).to_numpy()))
    duplicated = sorted(k for k, n in keys.items() if n > 1)
    missing, extra = sorted(expected - set(keys)), sorted(set(keys) - expected)
    if duplicated or missing or extra:
        raise RuntimeError(f"{len(expected)} lesions of tested patients but {keys.total()} out-of-fold predictions: "
                           f"without a prediction {missing[:5]}, predicted more than once {duplicated[:5]}, "
                           f"predicted but not tested (development only or unknown) {extra[:5]}")


def _reused_fold(fold: int, stored: dict[str, pd.DataFrame]) -> FoldResult:
    missing = [name for name in (PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE) if name not in stored]
    if missing:
        raise ValueError(f"fold {fold} finished earlier but its record lacks {missing}; it cannot be reused "
                         "(start the run again without resume)")
    return FoldResult(fold, stored[PREDICTIONS_FILE], stored[VALIDATION_PREDICTIONS_FILE], reused=True)


def claim_fold_folder(fold_dir: Path, resuming: bool) -> None:
    """Make ``fold_dir`` this run's before anything is written into it.

    A fold continues from any ``resume/last.ckpt`` in its folder, so two runs sharing an output
    folder would continue each other's training and both finish "normally". Unless ``resuming``,
    a folder that already holds anything is refused; the claim file, created exclusively,
    settles a race between two runs that both found the folder empty. Resuming claims nothing.
    """
    if resuming:
        return
    held = sorted(p.name for p in fold_dir.iterdir()) if fold_dir.is_dir() else []
    if not held:
        fold_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(fold_dir / FOLD_CLAIM_FILE, "x") as claim:
                claim.write(f"process {os.getpid()} on {socket.gethostname()} at "
                            f"{datetime.now().astimezone().isoformat(timespec='seconds')}\n")
            return
        except FileExistsError:
            held = [FOLD_CLAIM_FILE]
    claimed = fold_dir / FOLD_CLAIM_FILE
    by = f" (claimed by {claimed.read_text().strip()})" if claimed.is_file() else ""
    raise FileExistsError(
        f"output folder already used by another run: {fold_dir} already holds {held[:6]}{by}, and this run is "
        "not resuming. Give this run an output folder of its own (hydra.run.dir=...), or continue the run that "
        "wrote it with resume=true or resume=<run id>")


def build_callbacks(callbacks_cfg: DictConfig | None, fold_dir: Path) -> dict[str, Callback]:
    """The configured callbacks by name; checkpointing ones without a folder write into
    ``fold_dir/checkpoints``."""
    built = {}
    for name, cb_cfg in (callbacks_cfg or {}).items():
        cls = hydra.utils.get_class(cb_cfg._target_)
        extra = {}
        if issubclass(cls, ModelCheckpoint) and not cb_cfg.get("dirpath"):
            extra["dirpath"] = str(fold_dir / "checkpoints")
        built[name] = hydra.utils.instantiate(cb_cfg, **extra)
    return built


def best_checkpoint(callbacks: dict[str, Callback]) -> ModelCheckpoint | None:
    """The callback that keeps the best epoch: the one :class:`ModelCheckpoint` that monitors a
    metric (the resume checkpoint is no ModelCheckpoint). ``None`` when there is none: the last epoch's
    weights are used. More than one is ambiguous and refused."""
    found = {name: cb for name, cb in callbacks.items() if isinstance(cb, ModelCheckpoint) and cb.monitor}
    if len(found) > 1:
        raise ValueError(f"callbacks {sorted(found)} all keep a best checkpoint; keep one (which epoch's "
                         "weights predict would otherwise depend on their order)")
    return next(iter(found.values()), None)


def progress_bar_wanted(requested: bool, stream=None) -> bool:
    """Lightning's progress bar redraws one line with carriage returns: right on a terminal,
    noise in a log file. Shown only when requested and ``stream`` (stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    return bool(requested) and stream.isatty()


@contextmanager
def _lightning_pytree_warning_filtered():
    """pytorch-lightning 2.6 calls a torch pytree API that torch 2.13 deprecated, warning on every
    fit and predict; nothing in this project can act on it (it goes away with a Lightning release)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        yield


def _load_best_weights(module: pl.LightningModule, checkpoint_path: str) -> None:
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


#: Keys of the trainer config that are no ``Trainer`` arguments but the module's (models.module.PCRClassifier).
NETWORK_SPEED_KEYS = {"channels_last": "channels_last", "compile": "compile_net"}


def split_trainer_config(trainer_cfg: DictConfig) -> tuple[DictConfig, dict[str, bool]]:
    """The ``Trainer`` arguments of ``trainer_cfg``, and the module's speed switches it holds
    (``channels_last``, ``compile``) as module keyword arguments."""
    speed = {arg: bool(trainer_cfg[key]) for key, arg in NETWORK_SPEED_KEYS.items() if key in trainer_cfg}
    kept = {k: v for k, v in OmegaConf.to_container(trainer_cfg, resolve=True).items() if k not in NETWORK_SPEED_KEYS}
    return OmegaConf.create(kept), speed


def single_process_trainer(trainer_cfg: DictConfig) -> pl.Trainer:
    """A one-device ``Trainer`` on the configured accelerator and precision, for prediction
    after a data-parallel fit: a distributed sampler would split, and pad, the lesions to
    predict, repeating some; one process predicts every lesion exactly once."""
    return hydra.utils.instantiate(trainer_cfg, devices=1, num_nodes=1, strategy="auto", sync_batchnorm=False,
                                   plugins=None, callbacks=[], logger=False, enable_checkpointing=False,
                                   enable_progress_bar=False)


def _predict(trainer: pl.Trainer, module: pl.LightningModule, datamodule) -> list[tuple[np.ndarray, np.ndarray]]:
    """Probabilities for the validation and test lesions: two (row index, prob) pairs, each
    lesion once; ``trainer`` must run in one process (:func:`single_process_trainer`)."""
    if trainer.world_size != 1:
        raise ValueError(f"predictions come from one process, this trainer runs {trainer.world_size}: its "
                         "distributed sampler would pad the lesions (use single_process_trainer)")
    with _lightning_pytree_warning_filtered():
        outputs = trainer.predict(module, dataloaders=datamodule.predict_dataloader())
    result = []
    for loader_outputs in outputs:
        index = np.concatenate([o["index"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0, int)
        prob = np.concatenate([o["prob_pcr"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0)
        result.append((index, prob.astype(float)))
    return result


def _prediction_table(lesions: pd.DataFrame, rows: np.ndarray, prob: np.ndarray, fold: int) -> pd.DataFrame:
    return lesions.iloc[rows][["patient_id", "lesion_id"]].assign(
        fold=fold, prob_pcr=prob, pcr=lesions.pcr.to_numpy()[rows]).reset_index(drop=True)


#: Fold-run tag: how many epochs the fold had finished when this session resumed it (0: from the start).
RESUMED_AFTER_EPOCHS_TAG = "dlm_ml.resumed_after_epochs"
#: Tag of a fold's record: the torch threads it trained with.
FOLD_THREADS_TAG = "torch_threads"


def _resume_point(last_ckpt: Path, fold: int, run: FoldRun) -> str | None:
    """``last_ckpt`` when a resumed fold can continue from it, else ``None`` (train from epoch 0).

    A file that cannot be loaded (truncated by a full disk, damaged) is not trusted: the fold
    restarts, with a warning naming the file; its first finished epoch replaces it.
    """
    epochs = 0
    if last_ckpt.is_file():
        try:
            epochs = epochs_in_resume_checkpoint(last_ckpt)
        except ValueError as unreadable:
            log.warning("fold %d: resume checkpoint not trusted, the fold restarts from epoch 0: %s", fold, unreadable)
    run.set_tags({RESUMED_AFTER_EPOCHS_TAG: str(epochs)})
    if not epochs:
        return None
    log.info("fold %d: resuming from %s after %d finished epoch(s)", fold, last_ckpt, epochs)
    return str(last_ckpt)


def train_fold(cfg: DictConfig, patches: PatchSet, folds: pd.DataFrame, fold: int, run: FoldRun,
               fold_dir: Path, covariates: LesionCovariates | None = None, *, resuming: bool = False) -> FoldResult:
    """Train one fold (when ``resuming``, continuing from ``fold_dir/resume/last.ckpt`` when an
    earlier session left it; otherwise ``fold_dir`` must hold nothing yet), predict with the best
    epoch's weights, record metrics, tables and checkpoint."""
    claim_fold_folder(fold_dir, resuming)
    seed = int(cfg.seed)
    # Seeded before anything random is built, so the fold does not depend on the folds before it.
    seed_everything(seed + fold, cfg.trainer.get("deterministic"))
    last_ckpt = fold_dir / "resume" / "last.ckpt"
    datamodule = hydra.utils.instantiate(cfg.data.datamodule)(patches=patches, folds=folds, fold=fold,
                                                              covariates=covariates)
    net = build_network(cfg.model.net, datamodule.n_covariates)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    trainer_cfg, speed = split_trainer_config(cfg.trainer)
    module = hydra.utils.instantiate(cfg.model.module)(net=net, optimizer=hydra.utils.instantiate(cfg.model.optimizer),
                                                       scheduler=scheduler, pos_weight=datamodule.pos_weight, **speed)
    configured = build_callbacks(cfg.get("callbacks"), fold_dir)
    # Last, so that it saves after early stopping and the best checkpoint have seen the epoch.
    callbacks = [SeedEachEpoch(seed + fold), *configured.values(), resume_checkpoint(last_ckpt.parent)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=run.lightning_logger(), default_root_dir=str(fold_dir),
        enable_progress_bar=progress_bar_wanted(cfg.trainer.get("enable_progress_bar", True)))
    # The Trainer applies its own `deterministic` setting: record the state training runs with, and
    # the threads (a fold in a pool has fewer than the process's cores; the timing table shows them).
    run.set_tags({"torch_deterministic": str(torch.are_deterministic_algorithms_enabled()).lower(),
                  FOLD_THREADS_TAG: str(torch.get_num_threads())})
    # Only a resumed run trusts a checkpoint in its folder (claim_fold_folder refused any other's).
    ckpt_path = _resume_point(last_ckpt, fold, run) if resuming else None
    with _lightning_pytree_warning_filtered():
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    best = best_checkpoint(configured)
    if best is not None and best.best_model_path:
        _load_best_weights(module, best.best_model_path)
        run.log_file(best.best_model_path, "checkpoints")
    # The weights that predict below, and the encoding of their covariates: the fold's part of the
    # run's ensemble (models.ensemble), which new cohorts are predicted with.
    save_fold_predictor(fold_dir / PREDICTOR_DIR, module.net, datamodule.covariate_encoder)
    # A data-parallel fit ran in worker processes (a spawning strategy: only this process records
    # the run); its weights are back in `module`, its loop counters are not, the resume file has them.
    data_parallel = trainer.world_size > 1
    epochs_run = epochs_in_resume_checkpoint(last_ckpt) if data_parallel else trainer.current_epoch
    predictor = trainer
    if data_parallel:
        predictor = single_process_trainer(trainer_cfg)
        datamodule.setup("predict")  # set up in the worker processes only
    (val_rows, val_prob), (test_rows, test_prob) = _predict(predictor, module, datamodule)
    validation = _prediction_table(patches.lesions, val_rows, val_prob, fold)
    test = _prediction_table(patches.lesions, test_rows, test_prob, fold)
    metrics = {"n_test_lesions": len(test), "n_val_lesions": len(validation),
               "n_fit_lesions": len(datamodule.fit_rows), "epochs_run": float(epochs_run),
               "pos_weight": datamodule.pos_weight, "n_covariate_features": datamodule.n_covariates}
    if test.pcr.nunique() == 2:
        metrics["test_auc"] = roc_auc(test.pcr.to_numpy(), test.prob_pcr.to_numpy())
    run.log_metrics(metrics)
    run.log_table(test, PREDICTIONS_FILE)
    run.log_table(validation, VALIDATION_PREDICTIONS_FILE)
    log.info("fold %d: %d test lesions, test AUC %s", fold, len(test), metrics.get("test_auc", "n/a"))
    return FoldResult(fold, test, validation)
