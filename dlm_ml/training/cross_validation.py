"""dlm-train: patient-grouped K-fold training, out-of-fold predictions, MLflow tracking.

A thin composition of the parts built from the Hydra config: cohort → patches → folds
→ per fold (datamodule, network, LightningModule, Trainer) → predictions table →
evaluation against the readers. ``resume=true`` (or ``resume=<run id>``) continues an
interrupted run into the same MLflow parent run.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("dlm_ml.train")


def _seed_everything(seed: int) -> None:
    import pytorch_lightning as pl
    import torch
    from monai.utils import set_determinism

    pl.seed_everything(seed, workers=True, verbose=False)
    set_determinism(seed=seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _raise_on_sigterm() -> None:
    """Turn SIGTERM into an exception so a killed run is marked FAILED in MLflow."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass  # not the main thread; the launcher handles signals


def _load_best_weights(module, checkpoint_path: str) -> None:
    import torch

    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def _predict(trainer, module, datamodule):
    """Probabilities for the validation and test lesions: two (row index, prob) pairs."""
    import numpy as np

    outputs = trainer.predict(module, dataloaders=datamodule.predict_dataloader())
    result = []
    for loader_outputs in outputs:
        index = np.concatenate([o["index"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0, int)
        prob = np.concatenate([o["prob_pcr"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0)
        result.append((index, prob.astype(float)))
    return result


def config_hash(cfg: DictConfig) -> str:
    """Hash of what determines a run's results: the resolved config without output paths,
    resume/reproduce switches and tracking settings."""
    import hashlib
    import json

    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in ("resume", "reproduce_of", "logger"):
        resolved.pop(key, None)
    resolved.get("paths", {}).pop("output_dir", None)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside a Hydra app
        return []


def _sweep_tags() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:
        return {}
    if hc.mode != RunMode.MULTIRUN:
        return {}
    return {"dlm_ml.sweep": str(Path(hc.sweep.dir).resolve()), "dlm_ml.sweep_job": str(hc.job.num)}


def _find_resumable(client, experiment_id: str, cfg: DictConfig, digest: str):
    """The parent run to continue: the given id, or the latest unfinished run of this config."""
    resume = cfg.resume
    if isinstance(resume, str) and resume.lower() not in ("true", "false"):
        run = client.get_run(resume)
        if run.data.tags.get("dlm_ml.config_sha256") != digest:
            raise ValueError(f"run {resume} was made with a different configuration "
                             f"(config hash {run.data.tags.get('dlm_ml.config_sha256')} vs {digest}); "
                             "resume it with the same overrides it was started with")
        return run
    runs = client.search_runs([experiment_id],
                              f"tags.`dlm_ml.config_sha256` = '{digest}' and tags.`dlm_ml.role` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        if run.info.status != "FINISHED":
            return run
    raise ValueError(f"resume=true: no unfinished run with this configuration (hash {digest}) in experiment "
                     f"{cfg.logger.experiment_name!r}; start without resume")


def _provenance(client, run_id: str, cfg: DictConfig, cohort, fingerprint: str, digests: dict, out_dir: Path):
    """Code, configuration, data and environment of the run, as tags, params and artifacts."""
    import json
    from importlib import metadata

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    from dlm_ml import tracking
    from dlm_ml.utils.atomic import atomic_write_text

    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracking.log_params(client, run_id, tracking.flatten(resolved))
    code = tracking.git_state()
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_text(out_dir / "overrides.json", json.dumps(_command_line_overrides(), indent=2))
    requirements = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                          if d.metadata["Name"])
    atomic_write_text(out_dir / "requirements.lock.txt", "\n".join(dict.fromkeys(requirements)) + "\n")
    atomic_write_text(out_dir / "cohort_files.json", json.dumps(digests, indent=1, sort_keys=True))
    for name in ("config.yaml", "overrides.json", "requirements.lock.txt", "cohort_files.json"):
        tracking.log_file(client, run_id, out_dir / name, "provenance")
    if code.get("git_dirty") == "true":
        tracking.log_text(client, run_id, tracking.git_diff(), "provenance/uncommitted.diff")
    import torch

    tags = {
        **code, **{f"version.{k}": v for k, v in tracking.package_versions().items()},
        **{f"hardware.{k}": v for k, v in tracking.hardware().items()},
        "cohort_fingerprint": fingerprint, "cohort_dir": str(cohort.root), "seed": int(cfg.seed),
        "num_workers": int(cfg.data.datamodule.get("num_workers", 0)), "output_dir": str(out_dir),
        "torch_deterministic": str(torch.are_deterministic_algorithms_enabled()).lower(),
    }
    tracking.set_tags(client, run_id, tags)
    lesions = cohort.labelled_lesions()[["patient_id", "lesion_id", "x_mm", "y_mm", "z_mm", "diameter_mm", "pcr"]]
    dataset = mlflow.data.from_pandas(lesions, source=str(cohort.root), name=str(cohort.meta.get("name", "cohort")),
                                      digest=fingerprint[:32], targets="pcr")
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     tags=[InputTag("mlflow.data.context", "training")])])


def train(cfg: DictConfig) -> dict:
    """Run the whole training job described by ``cfg``; return paths, the parent run id and
    the evaluation."""
    import pandas as pd

    from dlm_ml import tracking
    from dlm_ml.data.cohort.fingerprint import cohort_file_digests, fingerprint_from_digests
    from dlm_ml.data.folds import check_no_leakage, folds_hash, make_folds
    from dlm_ml.data.patches import build_patches
    from dlm_ml.data.prepare import prepare_cohort
    from dlm_ml.data.registration import registration_config_from_cfg
    from dlm_ml.utils.atomic import atomic_write_csv

    started = time.time()
    _raise_on_sigterm()
    seed = int(cfg.seed)

    # Tracking first: an unreachable server must stop us before any work.
    client = tracking.open_client(cfg.logger.tracking_uri)
    experiment_id = tracking.get_experiment_id(client, cfg.logger.experiment_name, cfg.logger.get("artifact_location"))
    digest = config_hash(cfg)
    resumed = _find_resumable(client, experiment_id, cfg, digest) if cfg.get("resume") else None
    out_dir = Path(resumed.data.tags["output_dir"]) if resumed else Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    patch_config = hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints
    cohort, report = prepare_cohort(cfg.data)
    digests = cohort_file_digests(cohort.root, verify=bool(cfg.data.get("verify_fingerprint", False)))
    fingerprint = fingerprint_from_digests(digests)
    if resumed and resumed.data.tags.get("cohort_fingerprint") != fingerprint:
        raise ValueError(f"cohort {cohort.root} changed since run {resumed.info.run_id} started; cannot resume")
    patches = build_patches(cohort, patch_config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=log.info, registration=registration_config_from_cfg(cfg.data))
    if cfg.data.get("folds_file"):
        folds = pd.read_csv(cfg.data.folds_file, dtype={"patient_id": str})
        check_no_leakage(folds)
    else:
        folds = make_folds(patches.lesions, int(cfg.data.n_folds), seed)
    folds_path = atomic_write_csv(out_dir / "folds.csv", folds)

    if resumed:
        parent_id = resumed.info.run_id
        client.update_run(parent_id, status="RUNNING")
        tracking.set_tags(client, parent_id, {"dlm_ml.resumed": "true"})
        log.info("resuming MLflow run %s in %s", parent_id, out_dir)
    else:
        tags = {"dlm_ml.role": "train", "dlm_ml.config_sha256": digest, **_sweep_tags()}
        if cfg.get("reproduce_of"):
            tags["dlm_ml.reproduces"] = str(cfg.reproduce_of)
        run = client.create_run(experiment_id, run_name=cfg.logger.get("run_name") or cfg.task_name, tags=tags)
        parent_id = run.info.run_id
    try:
        if not resumed:
            _provenance(client, parent_id, cfg, cohort, fingerprint, digests, out_dir)
            tracking.set_tags(client, parent_id, {
                "patch_cache_key": patches.cache_key, "folds_sha256": folds_hash(folds), "n_lesions": len(patches),
                "n_patients": folds.patient_id.nunique(), "n_excluded_lesions": len(cohort.exclusions)})
            tracking.log_file(client, parent_id, folds_path)
            tracking.log_text(client, parent_id, report.summary(), "cohort_validation.txt")
            _log_registration(client, parent_id, patches)
            if len(cohort.exclusions):
                tracking.log_text(client, parent_id, cohort.exclusions.to_csv(index=False), "excluded_lesions.csv")

        children = _fold_runs(client, experiment_id, parent_id) if resumed else {}
        predictions, thresholds = [], []
        for fold in range(int(cfg.data.n_folds)):
            pred, thr = _train_fold(cfg, client, experiment_id, parent_id, patches, folds, fold, cohort, out_dir,
                                    children.get(fold))
            predictions.append(pred)
            thresholds.append(thr)
        predictions = pd.concat(predictions).sort_values(["patient_id", "lesion_id"]).reset_index(drop=True)
        thresholds = pd.concat(thresholds).reset_index(drop=True)
        if len(predictions) != len(patches):
            raise RuntimeError(f"{len(patches)} lesions but {len(predictions)} out-of-fold predictions")
        pred_path = atomic_write_csv(out_dir / "predictions.csv", predictions)
        thr_path = atomic_write_csv(out_dir / "thresholds.csv", thresholds)
        tracking.log_file(client, parent_id, pred_path)
        tracking.log_file(client, parent_id, thr_path)

        result = {"run_id": parent_id, "output_dir": str(out_dir), "predictions": str(pred_path)}
        if cfg.get("evaluate", True):
            from dlm_ml.evaluation.evaluate import evaluate_and_log

            evaluation = evaluate_and_log(predictions, cohort, thresholds, out_dir / "evaluation", client, parent_id,
                                          n_boot=int(cfg.n_boot), seed=seed)
            result["evaluation"] = evaluation
            print(evaluation.table_text)
        elapsed = time.time() - started
        tracking.log_metrics(client, parent_id, {"elapsed_s": elapsed})
        client.set_terminated(parent_id, "FINISHED")
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    print(f"MLflow run {parent_id} (experiment {cfg.logger.experiment_name!r}); elapsed {elapsed:.1f} s")
    print(f"Open the tracking UI with:\n  {ui_command(cfg)}")
    result["elapsed_s"] = elapsed
    return result


def _log_registration(client, run_id: str, patches) -> None:
    """Registration quality of the run's images: flagged and excluded counts, per-image table."""
    from dlm_ml import tracking

    registration = patches.registration
    if registration is None:
        return
    summary = registration.summary()
    tracking.log_metrics(client, run_id, {f"registration.{k}": v for k, v in summary.items()
                                          if isinstance(v, (int, float))})
    tracking.set_tags(client, run_id, {"registration.n_flagged": summary.get("n_flagged", 0),
                                       "registration.n_excluded": summary.get("n_excluded", 0)})
    tracking.log_text(client, run_id, registration.summary_text(), "registration/summary.txt")
    tracking.log_text(client, run_id, registration.table.to_csv(index=False), "registration/registration.csv")
    if patches.excluded_images is not None and len(patches.excluded_images):
        tracking.log_text(client, run_id, patches.excluded_images.to_csv(index=False),
                          "registration/excluded_images.csv")


def ui_command(cfg: DictConfig) -> str:
    uri = cfg.logger.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    artifacts = cfg.logger.get("artifact_location")
    extra = f" --default-artifact-root {Path(artifacts).resolve().as_uri()}" if artifacts else ""
    return f"mlflow ui --backend-store-uri {uri}{extra} --port 5000"


def _fold_runs(client, experiment_id: str, parent_id: str) -> dict:
    from dlm_ml import tracking

    runs = client.search_runs([experiment_id], f"tags.`{tracking.PARENT_TAG}` = '{parent_id}'")
    by_fold = {}
    for run in runs:
        fold = int(run.data.tags["fold"])
        if fold in by_fold:
            raise RuntimeError(f"run {parent_id} has two child runs for fold {fold}")
        by_fold[fold] = run
    return by_fold


def _finished_fold(client, child, fold: int):
    """Predictions and thresholds of a fold that completed before an interruption."""
    import pandas as pd

    from dlm_ml import tracking

    dtypes = {"patient_id": str, "lesion_id": str, "reader_id": str}
    pred = pd.read_csv(tracking.download_artifact(client, child.info.run_id, "predictions_fold.csv"), dtype=dtypes)
    thr = pd.read_csv(tracking.download_artifact(client, child.info.run_id, "thresholds_fold.csv"), dtype=dtypes)
    log.info("fold %d: finished before the interruption (run %s), reused", fold, child.info.run_id)
    return pred, thr


def _train_fold(cfg, client, experiment_id, parent_id, patches, folds, fold, cohort, out_dir, child=None):
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from dlm_ml import tracking
    from dlm_ml.evaluation.thresholds import reader_matched_thresholds
    from dlm_ml.models.callbacks import SeedEachEpoch, resume_checkpoint
    from dlm_ml.stats import roc_auc

    if child is not None and child.info.status == "FINISHED":
        return _finished_fold(client, child, fold)
    seed = int(cfg.seed)
    _seed_everything(seed + fold)
    if child is None:
        child = client.create_run(experiment_id, run_name=f"fold-{fold}",
                                  tags={tracking.PARENT_TAG: parent_id, "dlm_ml.role": "fold", "fold": str(fold)})
    else:
        client.update_run(child.info.run_id, status="RUNNING")
    child_id = child.info.run_id
    fold_dir = out_dir / f"fold_{fold}"
    last_ckpt = fold_dir / "resume" / "last.ckpt"
    try:
        datamodule = hydra.utils.instantiate(cfg.data.datamodule)(patches=patches, folds=folds, fold=fold)
        net = hydra.utils.instantiate(cfg.model.net)
        module = hydra.utils.instantiate(cfg.model.module)(net=net, pos_weight=datamodule.pos_weight)
        callbacks = [SeedEachEpoch(seed + fold), resume_checkpoint(last_ckpt.parent)]
        for name, cb_cfg in (cfg.get("callbacks") or {}).items():
            extra = {"dirpath": str(fold_dir / "checkpoints")} if name == "model_checkpoint" else {}
            callbacks.append(hydra.utils.instantiate(cb_cfg, **extra))
        logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri,
                              run_id=child_id)
        trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                                                      default_root_dir=str(fold_dir))
        ckpt_path = str(last_ckpt) if last_ckpt.is_file() else None
        if ckpt_path:
            log.info("fold %d: resuming from %s", fold, ckpt_path)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
        best = next((c for c in callbacks[2:] if isinstance(c, pl.callbacks.ModelCheckpoint)), None)
        if best is not None and best.best_model_path:
            _load_best_weights(module, best.best_model_path)
            tracking.log_file(client, child_id, best.best_model_path, "checkpoints")
        (val_idx, val_prob), (test_idx, test_prob) = _predict(trainer, module, datamodule)
        lesions = patches.lesions
        test = lesions.iloc[test_idx][["patient_id", "lesion_id"]].assign(
            fold=fold, prob_pcr=test_prob, pcr=lesions.pcr.to_numpy()[test_idx])
        thresholds = reader_matched_thresholds(lesions.iloc[val_idx][["patient_id", "lesion_id", "pcr"]],
                                               val_prob, cohort.readings, fold)
        metrics = {"n_test_lesions": len(test), "n_val_lesions": len(val_idx),
                   "n_fit_lesions": len(datamodule.fit_rows), "epochs_run": float(trainer.current_epoch),
                   "pos_weight": datamodule.pos_weight}
        if test.pcr.nunique() == 2:
            metrics["test_auc"] = roc_auc(test.pcr.to_numpy(), test.prob_pcr.to_numpy())
        tracking.log_metrics(client, child_id, metrics)
        # Full float precision: a resumed run rebuilds its predictions from these files.
        tracking.log_text(client, child_id, test.to_csv(index=False, float_format="%.17g"), "predictions_fold.csv")
        tracking.log_text(client, child_id, thresholds.to_csv(index=False, float_format="%.17g"),
                          "thresholds_fold.csv")
        client.set_terminated(child_id, "FINISHED")
    except BaseException:
        client.set_terminated(child_id, "FAILED")
        raise
    log.info("fold %d: %d test lesions, test AUC %s", fold, len(test), metrics.get("test_auc", "n/a"))
    return test, thresholds
