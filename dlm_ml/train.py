"""dlm-train: patient-grouped K-fold training, out-of-fold predictions, MLflow tracking.

A thin composition of the parts built from the Hydra config: cohort → patches → folds
→ per-fold (datamodule, network, LightningModule, Trainer) → predictions table →
evaluation against the readers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dlm_ml import config_resolvers  # noqa: F401  (registers ${dlm_channels:...} etc.)

log = logging.getLogger("dlm_ml.train")
# conf/ lives beside the package (editable install); an absolute path works both as
# `dlm-train` and as `python -m dlm_ml.train`.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


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
        pass  # not the main thread (e.g. a joblib worker); the launcher handles signals


def _load_best_weights(module, checkpoint_path: str) -> None:
    import torch

    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def _predict(trainer, module, datamodule):
    """Probabilities for the validation and test lesions: two arrays of (row index, prob)."""
    import numpy as np

    outputs = trainer.predict(module, dataloaders=datamodule.predict_dataloader())
    result = []
    for loader_outputs in outputs:
        index = np.concatenate([o["index"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0, int)
        prob = np.concatenate([o["prob_pcr"].numpy() for o in loader_outputs]) if loader_outputs else np.zeros(0)
        result.append((index, prob.astype(float)))
    return result


def reader_matched_thresholds(val_lesions, val_prob, readings, fold: int):
    """For each reader: the model threshold whose specificity on the fold's validation
    lesions matches the reader's specificity on the same lesions. Test labels are never seen."""
    import math

    import pandas as pd

    from dlm_ml.stats import threshold_for_specificity

    rows = []
    table = val_lesions.assign(prob_pcr=val_prob)
    for reader_id, reads in readings.groupby("reader_id", sort=True):
        joined = table.merge(reads[["patient_id", "lesion_id", "call"]], on=["patient_id", "lesion_id"])
        negatives = joined[joined.pcr == 0]
        threshold, spec = math.nan, math.nan
        if len(negatives) and joined.pcr.nunique() == 2:
            spec = float((negatives.call == 0).mean())
            threshold = threshold_for_specificity(joined.pcr.to_numpy(), joined.prob_pcr.to_numpy(), spec).threshold
        rows.append({"fold": fold, "reader_id": reader_id, "reader_specificity_val": spec,
                     "threshold": threshold, "n_val_lesions": len(joined)})
    return pd.DataFrame(rows)


def train(cfg: DictConfig) -> dict:
    """Run the whole training job described by ``cfg``; return paths and the parent run id."""
    import pandas as pd

    from dlm_ml import tracking
    from dlm_ml.atomic import atomic_write_csv, atomic_write_text
    from dlm_ml.data.fingerprint import cohort_fingerprint
    from dlm_ml.data.folds import check_no_leakage, folds_hash, make_folds
    from dlm_ml.data.patches import build_patches
    from dlm_ml.data.prepare import prepare_cohort

    started = time.time()
    _raise_on_sigterm()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.seed)

    # Tracking first: an unreachable server must stop us before any work.
    client = tracking.open_client(cfg.logger.tracking_uri)
    experiment_id = tracking.get_experiment_id(client, cfg.logger.experiment_name, cfg.logger.get("artifact_location"))

    patch_config = hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints
    cohort, report = prepare_cohort(cfg.data)
    fingerprint = cohort_fingerprint(cohort.root)
    patches = build_patches(cohort, patch_config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=log.info)
    if cfg.data.get("folds_file"):
        folds = pd.read_csv(cfg.data.folds_file, dtype={"patient_id": str})
        check_no_leakage(folds)
    else:
        folds = make_folds(patches.lesions, int(cfg.data.n_folds), seed)
    folds_path = atomic_write_csv(out_dir / "folds.csv", folds)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    run = client.create_run(experiment_id, run_name=cfg.logger.get("run_name") or cfg.task_name,
                            tags={"dlm_ml.role": "train"})
    parent_id = run.info.run_id
    try:
        tracking.log_params(client, parent_id, tracking.flatten(resolved))
        tags = {
            **tracking.git_state(), **{f"version.{k}": v for k, v in tracking.package_versions().items()},
            **{f"hardware.{k}": v for k, v in tracking.hardware().items()},
            "cohort_fingerprint": fingerprint, "patch_cache_key": patches.cache_key, "seed": seed,
            "folds_sha256": folds_hash(folds), "n_lesions": len(patches), "n_patients": folds.patient_id.nunique(),
            "n_excluded_lesions": len(cohort.exclusions),
        }
        tracking.set_tags(client, parent_id, tags)
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        tracking.log_file(client, parent_id, out_dir / "config.yaml")
        tracking.log_file(client, parent_id, folds_path)
        tracking.log_text(client, parent_id, report.summary(), "cohort_validation.txt")
        if len(cohort.exclusions):
            tracking.log_text(client, parent_id, cohort.exclusions.to_csv(index=False), "excluded_lesions.csv")

        predictions, thresholds = [], []
        for fold in range(int(cfg.data.n_folds)):
            pred, thr = _train_fold(cfg, client, experiment_id, parent_id, patches, folds, fold, cohort, out_dir)
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
            from dlm_ml.evaluate import evaluate_and_log

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


def ui_command(cfg: DictConfig) -> str:
    uri = cfg.logger.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    artifacts = cfg.logger.get("artifact_location")
    extra = f" --default-artifact-root {Path(artifacts).resolve().as_uri()}" if artifacts else ""
    return f"mlflow ui --backend-store-uri {uri}{extra} --port 5000"


def _train_fold(cfg, client, experiment_id, parent_id, patches, folds, fold, cohort, out_dir):
    import pandas as pd
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from dlm_ml import tracking

    seed = int(cfg.seed)
    _seed_everything(seed + fold)
    child = client.create_run(experiment_id, run_name=f"fold-{fold}",
                              tags={tracking.PARENT_TAG: parent_id, "dlm_ml.role": "fold", "fold": str(fold)})
    child_id = child.info.run_id
    try:
        datamodule = hydra.utils.instantiate(cfg.data.datamodule)(patches=patches, folds=folds, fold=fold)
        net = hydra.utils.instantiate(cfg.model.net)
        module = hydra.utils.instantiate(cfg.model.module)(net=net, pos_weight=datamodule.pos_weight)
        fold_dir = out_dir / f"fold_{fold}"
        callbacks = []
        for name, cb_cfg in (cfg.get("callbacks") or {}).items():
            extra = {"dirpath": str(fold_dir / "checkpoints")} if name == "model_checkpoint" else {}
            callbacks.append(hydra.utils.instantiate(cb_cfg, **extra))
        logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri,
                              run_id=child_id)
        trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                                                      default_root_dir=str(fold_dir))
        trainer.fit(module, datamodule=datamodule)
        checkpoint = next((c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)), None)
        if checkpoint is not None and checkpoint.best_model_path:
            _load_best_weights(module, checkpoint.best_model_path)
            tracking.log_file(client, child_id, checkpoint.best_model_path, "checkpoints")
        (val_idx, val_prob), (test_idx, test_prob) = _predict(trainer, module, datamodule)
        lesions = patches.lesions
        test = lesions.iloc[test_idx][["patient_id", "lesion_id"]].assign(
            fold=fold, prob_pcr=test_prob, pcr=lesions.pcr.to_numpy()[test_idx])
        thresholds = reader_matched_thresholds(lesions.iloc[val_idx][["patient_id", "lesion_id", "pcr"]],
                                               val_prob, cohort.readings, fold)
        from dlm_ml.stats import roc_auc

        metrics = {"n_test_lesions": len(test), "n_val_lesions": len(val_idx), "n_fit_lesions": len(datamodule.fit_rows),
                   "best_epoch": float(trainer.current_epoch), "pos_weight": datamodule.pos_weight}
        if test.pcr.nunique() == 2:
            metrics["test_auc"] = roc_auc(test.pcr.to_numpy(), test.prob_pcr.to_numpy())
        tracking.log_metrics(client, child_id, metrics)
        tracking.log_text(client, child_id, test.to_csv(index=False), "predictions_fold.csv")
        client.set_terminated(child_id, "FINISHED")
    except BaseException:
        client.set_terminated(child_id, "FAILED")
        raise
    log.info("fold %d: %d test lesions, test AUC %s", fold, len(test), metrics.get("test_auc", "n/a"))
    return test, thresholds


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("PYTHONHASHSEED", str(cfg.seed))
    result = train(cfg)
    evaluation = result.get("evaluation")
    return None if evaluation is None else evaluation.metrics.get("model_auc")


if __name__ == "__main__":
    main()
