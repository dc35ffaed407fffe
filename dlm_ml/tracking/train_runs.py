"""The parent run of ``dlm-train``: its name, its config digest, finding the run to resume, the
parent that the fold jobs of one configuration share, and logging what the run was trained on
(folds, cohort validation, registration)."""

from __future__ import annotations

import datetime
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from dlm_ml.data.folds import folds_hash
from dlm_ml.tracking.client import log_file, log_metrics, log_text, set_tags
from dlm_ml.tracking.config_keys import is_result_key, result_config
from dlm_ml.tracking.tracker import MlflowTracker
from dlm_ml.utils.atomic import atomic_write_text
from dlm_ml.utils.hashing import payload_digest

CONFIG_DIGEST_TAG = "dlm_ml.config_sha256"
_MAX_RUN_NAME = 250
#: In a run's output folder: locked by the process running (or resuming) the run for as long as it
#: runs (:func:`holding_run_folder`); it says which process that is.
RUN_LOCK_FILE = "run.lock"
#: ``errno`` values of a file system that offers no locks: the run goes on, unguarded, with a warning.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}

log = logging.getLogger("dlm_ml.tracking")


class RunHeldElsewhere(RuntimeError):
    """The run is still running in another live process (this host or another node)."""


#: Overrides that choose how a configuration's folds are run, not what they compute: one fold as its
#: own job (``data.fold=k``) and gathering the fold jobs (``finalise=true``).
FOLD_JOB_OVERRIDES = ("data.fold", "finalise")


def config_digest(resolved: dict) -> str:
    """Digest of what determines a run's results: the resolved config without the keys that only
    place, name or continue it (:func:`dlm_ml.tracking.config_keys.result_config`), nor those
    that split its folds into jobs (:data:`FOLD_JOB_OVERRIDES`): every fold job of a
    configuration, its finalise step and a single-process run of it share one digest."""
    config = result_config(resolved)
    config.pop("finalise", None)
    if isinstance(config.get("data"), dict) and "fold" in config["data"]:
        config["data"] = {**config["data"], "fold": None}
    return payload_digest(config)


def without_fold_job_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` without those of :data:`FOLD_JOB_OVERRIDES`: what the run's results come from
    (its name, the overrides provenance records and ``dlm-reproduce`` replays in one process)."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in FOLD_JOB_OVERRIDES]


def command_line_overrides() -> list[str]:
    """The task overrides of the running Hydra job (empty outside a Hydra app)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


#: Tag naming the model a run's predictions come from (the ``model`` option of dlm-train).
MODEL_NAME_TAG = "dlm_ml.model"


def config_choice(group: str) -> str:
    """The option chosen for a config group (``model`` → ``small_cnn``), or ``unknown`` outside Hydra."""
    try:
        return str(HydraConfig.get().runtime.choices.get(group, "unknown"))
    except ValueError:
        return "unknown"


def run_name_from_overrides(overrides: list[str], task_name: str) -> str:
    """``model=resnet10,seed=2``: the overrides that change results, in the order given; the task
    name when there are none (where results go is no part of what a run is)."""
    shown = [o.lstrip("+~") for o in overrides if is_result_key(o)]
    return (",".join(shown) or str(task_name))[:_MAX_RUN_NAME]


def sweep_tags() -> dict[str, str]:
    """``dlm_ml.sweep`` (the sweep folder) and ``dlm_ml.sweep_job`` for a job of ``-m`` sweep."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return {}
    if hc.mode != RunMode.MULTIRUN:
        return {}
    return {"dlm_ml.sweep": str(Path(hc.sweep.dir).resolve()), "dlm_ml.sweep_job": str(hc.job.num)}


def find_resumable(tracker: MlflowTracker, resume, digest: str) -> Run:
    """The parent run to continue: the run id ``resume`` names, or (``resume=true``) the latest
    unfinished run of this configuration. A run of another configuration is refused, and so is a
    run that another live process still runs (:class:`RunHeldElsewhere`, see
    :func:`holding_run_folder`)."""
    client = tracker.client
    if isinstance(resume, str) and resume.lower() not in ("true", "false"):
        run = client.get_run(resume)
        if run.data.tags.get(CONFIG_DIGEST_TAG) != digest:
            raise ValueError(f"run {resume} was made with a different configuration "
                             f"(config digest {run.data.tags.get(CONFIG_DIGEST_TAG)} vs {digest}); "
                             "resume it with the same overrides it was started with")
        return _not_held_elsewhere(run)
    runs = client.search_runs([tracker.experiment_id],
                              f"tags.`{CONFIG_DIGEST_TAG}` = '{digest}' and tags.`dlm_ml.role` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        if run.info.status != "FINISHED":
            return _not_held_elsewhere(run)
    raise ValueError(f"resume=true: no unfinished run with this configuration (digest {digest}) in experiment "
                     f"{tracker.experiment_name!r}; start without resume")


def _not_held_elsewhere(run: Run) -> Run:
    """``run``, unless a live process holds its output folder (checked, not kept: the resuming
    command holds the folder itself once it starts the run, :func:`holding_run_folder`)."""
    out_dir = run.data.tags.get("output_dir")
    if out_dir and Path(out_dir).is_dir():
        with holding_run_folder(Path(out_dir), run.info.run_id):
            pass
    return run


@contextmanager
def holding_run_folder(out_dir: Path, run_id: str | None = None, *, shared: bool = False) -> Iterator[None]:
    """Hold ``out_dir`` (a run's output folder) for this process while the block runs.

    The hold is an exclusive advisory lock (``flock``) on ``out_dir/run.lock``, which says who
    holds it (process, host, since when). The operating system drops the lock when the process
    ends, however it ends (also SIGKILL or a lost node, once the file server notices), so a run
    is held exactly as long as a process runs it: no heartbeat to age, no process id to reuse.
    It holds across the nodes of a cluster when the folder lies on a shared file system with
    locks (NFS with its lock service, Lustre mounted with ``flock``); on one without, a warning
    says that a second process resuming the run would not be noticed.

    ``shared``: a fold job's hold of the folder its configuration's fold jobs share; any number of
    them hold it at once, and an exclusive holder (finalise, resume) is refused while one does.

    Raises :class:`RunHeldElsewhere` naming the holder when another process holds the folder.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / RUN_LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "fold jobs still running"
            what = f"run {run_id}" if run_id else f"the run in {out_dir}"
            raise RunHeldElsewhere(
                f"{what} is still running: its output folder is held by {holder} ({lock_path}). It is not "
                "resumed twice; wait for that process to end (or stop it), then resume") from None
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            log.warning("%s: the file system offers no locks (%s); a second process resuming this run at the "
                        "same time would not be noticed", lock_path, error)
        else:
            # A shared hold names nobody (an exclusive contender then reads "fold jobs still running").
            os.ftruncate(fd, 0)
            if not shared:
                os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                              f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


#: In the folder that one configuration's fold jobs share (:func:`fold_jobs_folder`): the id of
#: their parent run, written once by the job that created it, and the file locked while a job
#: looks for that id or creates the run.
PARENT_RUN_FILE = "parent_run_id.txt"
PARENT_LOCK_FILE = "parent_run.lock"


def fold_jobs_folder(root: str | Path, digest: str) -> Path:
    """The folder the fold jobs of the configuration with config digest ``digest`` share under
    ``root`` (``paths.fold_jobs_dir``): their folds, fold folders and parent run id."""
    return Path(root).resolve() / f"config_{digest}"


def shared_parent_run(folder: Path, create: Callable[[], str]) -> tuple[str, bool]:
    """The parent run of the fold jobs sharing ``folder``: the id the first of them wrote to
    :data:`PARENT_RUN_FILE`, or, for that first job, the id ``create()`` returns (written once
    ``create`` has returned). Looking and creating happen under an exclusive ``flock`` of
    :data:`PARENT_LOCK_FILE`, so of jobs racing to start exactly one creates the parent; the
    others wait for it. Across nodes this needs a shared file system with locks (as
    :func:`holding_run_folder`). Returns ``(run id, created by this call)``."""
    folder.mkdir(parents=True, exist_ok=True)
    id_file = folder / PARENT_RUN_FILE
    fd = os.open(folder / PARENT_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            log.warning("%s: the file system offers no locks (%s); fold jobs starting at the same moment could "
                        "each create a parent run", folder / PARENT_LOCK_FILE, error)
        if id_file.is_file():
            return id_file.read_text().strip(), False
        run_id = create()
        atomic_write_text(id_file, run_id + "\n")
        return run_id, True
    finally:
        os.close(fd)  # releases the lock


def parent_to_finalise(tracker: MlflowTracker, folder: Path, digest: str) -> Run:
    """The parent run the fold jobs in ``folder`` share, for ``finalise`` to gather them into.
    Refused when no fold job has run there, or when the run was made with another configuration."""
    id_file = folder / PARENT_RUN_FILE
    if not id_file.is_file():
        raise ValueError(f"finalise: no fold job of this configuration (config digest {digest}) has run in "
                         f"{folder}; run the fold jobs (data.fold=k) first, with the same overrides and "
                         "paths.fold_jobs_dir")
    run = tracker.client.get_run(id_file.read_text().strip())
    if run.data.tags.get(CONFIG_DIGEST_TAG) != digest:
        raise ValueError(f"finalise: run {run.info.run_id} in {folder} was made with a different configuration "
                         f"(config digest {run.data.tags.get(CONFIG_DIGEST_TAG)} vs {digest})")
    return run


def check_folds_agree(stored_path: Path, folds: pd.DataFrame) -> None:
    """Refuse a fold job (or finalise) whose folds differ from those the configuration's first fold
    job stored at ``stored_path``: a fold trained on another split would test lesions it saw."""
    stored = pd.read_csv(stored_path, dtype={"patient_id": str})
    if folds_hash(stored) == folds_hash(folds):
        return
    merged = stored.merge(folds.astype({"patient_id": str}), on="patient_id", how="outer", suffixes=("_stored", ""))
    differing = merged[merged.fold_stored.ne(merged.fold)]
    raise ValueError(f"the folds computed here differ from those of this configuration's fold jobs in {stored_path} "
                     f"for {len(differing)} patient(s), e.g. {differing.patient_id.head(5).tolist()}; the cohort or "
                     "the split changed since the first fold job started")


def report_header(run_id: str, run_name: str, cohort_fingerprint: str, git_commit: str) -> dict[str, str]:
    """What the evaluation report names at its top: the run, the model option, the cohort, the code, the date."""
    return {"run_id": run_id, "run_name": run_name, "model": config_choice("model"),
            "cohort_fingerprint": cohort_fingerprint, "git_commit": git_commit,
            "date": datetime.date.today().isoformat()}


def log_evaluation(client: MlflowClient, run_id: str, evaluation) -> None:
    """An evaluation's metrics, coverage counts (as ``count_<name>``) and files (under ``evaluation/``)."""
    log_metrics(client, run_id, evaluation.metrics)
    log_metrics(client, run_id, {"count_" + k: v for k, v in evaluation.counts.items()})
    for path in evaluation.files:
        log_file(client, run_id, path, "evaluation")


def elapsed_before(run: Run | None) -> float:
    """Seconds the earlier sessions of a resumed run took (0 for a new run)."""
    return float(run.data.metrics.get("elapsed_s", 0.0)) if run is not None else 0.0


def log_training_data(client: MlflowClient, run_id: str, *, cohort, validation_summary: str, inputs,
                      folds: pd.DataFrame, folds_path: Path) -> None:
    """Tags and artifacts of what the run trains on: the inputs' cache key (patches or lesion
    features), fold split, counts, the cohort validation summary, excluded lesions, registration
    quality. ``inputs``: a :class:`~dlm_ml.cli.train_inputs.TrainingInputs`-like object."""
    set_tags(client, run_id, {
        "patch_cache_key": inputs.cache_key, "folds_sha256": folds_hash(folds), "n_lesions": len(inputs.lesions),
        "n_patients": folds.patient_id.nunique(), "n_excluded_lesions": len(cohort.exclusions)})
    log_file(client, run_id, folds_path)
    log_text(client, run_id, validation_summary, "cohort_validation.txt")
    if len(cohort.exclusions):
        log_text(client, run_id, cohort.exclusions.to_csv(index=False), "excluded_lesions.csv")
    registration = inputs.registration
    if registration is None:
        return
    summary = registration.summary()
    log_metrics(client, run_id, {f"registration.{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
    set_tags(client, run_id, {"registration.n_flagged": summary.get("n_flagged", 0),
                              "registration.n_excluded": summary.get("n_excluded", 0)})
    log_text(client, run_id, registration.summary_text(), "registration/summary.txt")
    log_text(client, run_id, registration.table.to_csv(index=False), "registration/registration.csv")
    if inputs.excluded_images is not None and len(inputs.excluded_images):
        log_text(client, run_id, inputs.excluded_images.to_csv(index=False), "registration/excluded_images.csv")
