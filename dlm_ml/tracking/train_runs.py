"""The parent run of ``dlm-train``: its name, its config digest, finding the run to resume, and
logging what the run was trained on (folds, cohort validation, registration)."""

from __future__ import annotations

import datetime
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
from dlm_ml.utils.hashing import payload_digest

CONFIG_DIGEST_TAG = "dlm_ml.config_sha256"
_MAX_RUN_NAME = 250


def config_digest(resolved: dict) -> str:
    """Digest of what determines a run's results: the resolved config without the keys that only
    place, name or continue it (:func:`dlm_ml.tracking.config_keys.result_config`)."""
    return payload_digest(result_config(resolved))


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
    unfinished run of this configuration. A run of another configuration is refused."""
    client = tracker.client
    if isinstance(resume, str) and resume.lower() not in ("true", "false"):
        run = client.get_run(resume)
        if run.data.tags.get(CONFIG_DIGEST_TAG) != digest:
            raise ValueError(f"run {resume} was made with a different configuration "
                             f"(config digest {run.data.tags.get(CONFIG_DIGEST_TAG)} vs {digest}); "
                             "resume it with the same overrides it was started with")
        return run
    runs = client.search_runs([tracker.experiment_id],
                              f"tags.`{CONFIG_DIGEST_TAG}` = '{digest}' and tags.`dlm_ml.role` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        if run.info.status != "FINISHED":
            return run
    raise ValueError(f"resume=true: no unfinished run with this configuration (digest {digest}) in experiment "
                     f"{tracker.experiment_name!r}; start without resume")


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
