"""One fold of ``dlm-train`` as its own job (``data.fold=k``), for clusters and local sweeps.

The fold jobs of one configuration share a folder (``paths.fold_jobs_dir``, named by the config
digest, which leaves ``data.fold`` out) and one MLflow parent run: the first job creates it under
a file lock and the others join it (:func:`dlm_ml.tracking.train_runs.shared_parent_run`). Each
job trains its fold into the folder and records it as the fold's child run; none marks the
parent finished. ``finalise=true`` with the same configuration then gathers the folds into the
parent run by the path an interrupted run resumes by (``dlm_ml.cli.train``).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from dlm_ml.data.folds import held_out_folds
from dlm_ml.tracking import train_runs
from dlm_ml.tracking.fold_runs import MlflowFoldRecorder
from dlm_ml.tracking.tracker import MlflowTracker
from dlm_ml.training.cross_validation import cross_validate
from dlm_ml.utils.atomic import atomic_write_csv

log = logging.getLogger("dlm_ml.train")


def fold_job_mode(cfg: DictConfig) -> str | None:
    """``"fold"`` (``data.fold=k``: train fold k only), ``"finalise"`` or ``None`` (every fold in
    this process); contradictory requests are refused."""
    fold, finalise = cfg.data.get("fold"), bool(cfg.get("finalise"))
    if fold is not None and finalise:
        raise ValueError(f"data.fold={fold} with finalise=true: finalise gathers every fold; leave data.fold out")
    if (fold is not None or finalise) and cfg.get("resume"):
        raise ValueError("resume with data.fold or finalise: a fold job continues its own fold when run again, "
                         "and finalise gathers the finished folds; leave resume out")
    return "fold" if fold is not None else "finalise" if finalise else None


def train_fold_job(cfg: DictConfig, tracker: MlflowTracker, folder: Path, inputs, folds: pd.DataFrame, *,
                   run_name: str, tags: dict[str, str], start_parent: Callable[[str, Path], None]) -> dict:
    """Train test fold ``cfg.data.fold`` of ``folds`` into ``folder`` as a child run of the
    configuration's shared parent run. ``start_parent(run_id, folds_path)`` records the parent's
    provenance and training data; the job that creates the parent calls it once. A job run again
    for a fold that a dead job left half-trained continues it from its last epoch; a fold that
    finished is not trained again. Returns the parent run id, the folder and the fold."""
    if inputs.patches is None:
        raise ValueError(f"data.fold={cfg.data.fold}: a baseline ({cfg.model.get('_target_', 'tabular model')}) "
                         "trains every fold in one process in seconds; run it without data.fold")
    fold = int(cfg.data.fold)
    if fold not in (tested := held_out_folds(folds)):
        raise ValueError(f"data.fold={fold}: the validation design has no such test fold; its test folds are {tested}")
    client = tracker.client

    def create_parent() -> str:
        run_id = client.create_run(tracker.experiment_id, run_name=run_name, tags=tags).info.run_id
        try:
            start_parent(run_id, atomic_write_csv(folder / "folds.csv", folds))
        except BaseException:
            client.set_terminated(run_id, "FAILED")  # never a half-recorded parent the other jobs join
            raise
        return run_id

    # Shared by the configuration's fold jobs; finalise (exclusive) waits until none runs.
    with train_runs.holding_run_folder(folder, shared=True):
        parent_id, created = train_runs.shared_parent_run(folder, create_parent)
        train_runs.check_folds_agree(folder / "folds.csv", folds)
        log.info("fold %d of parent run %s (%s) in %s", fold, parent_id, "created" if created else "joined", folder)
        # Exclusive per fold: one live job trains a fold; a job run again continues what a dead one left.
        with train_runs.holding_run_folder(folder / f"fold_{fold}"):
            cross_validate(cfg, inputs.patches, folds, MlflowFoldRecorder(tracker, parent_id), folder,
                           inputs.covariates, resuming=True, only_fold=fold)
    overrides = [o for o in train_runs.without_fold_job_overrides(train_runs.command_line_overrides())
                 if not o.startswith("paths.fold_jobs_dir=")]
    print(f"fold {fold} recorded in MLflow run {parent_id} (experiment {tracker.experiment_name!r}); once every "
          f"fold has run, gather them with:\n  dlm-train {shlex.join(overrides)} finalise=true "
          f"paths.fold_jobs_dir={shlex.quote(str(folder.parent))}")
    return {"run_id": parent_id, "output_dir": str(folder), "fold": fold}
