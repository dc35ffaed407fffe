"""dlm-predict: a training run's fold ensemble applied to every lesion of a cohort (external validation).

``dlm-predict run_id=RUN data.cohort_dir=NEW_COHORT [folds=[k]] [flip_tta=true] [explain=true]``.
Re-applies the run's own preprocessing (a preprocessing key asked differently is refused), predicts
every lesion (outcomes and readings are optional), writes ``predictions.csv`` (mean of the folds'
calibrated probabilities, their spread, each fold's), evaluates against the cohort's readers when it
has outcomes and readings, and records one MLflow run tagged with the source run and the cohort's
fingerprint.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.cli.errors import command_errors
from dlm_ml.cli.evaluation_run import evaluate_into_run
from dlm_ml.cli.predict_explain import explain_lesions
from dlm_ml.cli.predict_inputs import prediction_cohort, preprocessing_differences, run_patches
from dlm_ml.data.cohort.fingerprint import cohort_fingerprint
from dlm_ml.models.cohort_prediction import check_channels, ensemble_covariates, labelled_rows, predict_lesions
from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.tracking import client as tracking
from dlm_ml.tracking import train_runs
from dlm_ml.tracking.ensemble_model import download_fold_ensemble, trained_run
from dlm_ml.tracking.run import tracked_run
from dlm_ml.tracking.train_runs import MODEL_NAME_TAG
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.signals import raise_on_sigterm

log = logging.getLogger("dlm_ml.predict")


def predict(cfg: DictConfig) -> dict:
    raise_on_sigterm()
    tracker = hydra.utils.instantiate(cfg.logger)
    client = tracker.client
    run_id = str(cfg.run_id)
    source, run_cfg = trained_run(client, run_id)
    asked = preprocessing_differences(cfg, run_cfg, train_runs.command_line_overrides())
    if asked:
        raise ValueError(f"run {run_id} prepared its cohort differently from what was asked; predictions must use "
                         "the run's preprocessing:\n  " + "\n  ".join(asked))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dlm_ml-ensemble-") as tmp:
        ensemble = FoldEnsemble.load(download_fold_ensemble(client, run_id, tmp))
    cohort = prediction_cohort(cfg.data.cohort_dir)
    fingerprint = cohort_fingerprint(cohort.root)
    patches = run_patches(run_cfg, cohort, cfg.paths.cache_dir, int(cfg.data.preprocess_workers))
    for note in check_channels(ensemble, patches):
        log.info("missing images: %s", note)
    covariates = ensemble_covariates(ensemble, cohort, patches.lesions)
    folds = None if cfg.folds is None else [int(k) for k in cfg.folds]
    predictions = predict_lesions(ensemble, patches, covariates, folds=folds, flip_tta=bool(cfg.flip_tta),
                                  batch_size=int(cfg.batch_size))
    labelled = labelled_rows(predictions)
    evaluated = bool(cfg.evaluate) and len(labelled) > 0 and len(cohort.readings) > 0
    model_name = source.data.tags.get(MODEL_NAME_TAG, ensemble.model_name)
    tags = {"dlm_ml.role": "evaluate" if evaluated else "predict", "dlm_ml.source_run": run_id,
            MODEL_NAME_TAG: model_name, "cohort_fingerprint": fingerprint, "cohort_dir": str(cohort.root),
            "dlm_ml.folds": predictions.folds.iloc[0] if len(predictions) else "", "dlm_ml.flip_tta": str(cfg.flip_tta)}
    with tracked_run(client, tracker.experiment_id, run_name=f"predict {model_name}", tags=tags) as predict_run:
        tracking.log_file(client, predict_run, atomic_write_csv(out_dir / "predictions.csv", predictions,
                                                                float_format="%.17g"))
        outcome = {"run_id": predict_run, "output_dir": str(out_dir), "predictions": predictions}
        if cfg.explain:
            saliency_dir = out_dir / "saliency"
            for path in explain_lesions(ensemble, patches, cohort, covariates, predictions, saliency_dir,
                                        cfg.saliency, run_cfg["data"]["patches"]):
                if path.suffix == ".png":  # the montages; the NIfTI maps stay in the output folder
                    tracking.log_file(client, predict_run, path, f"saliency/{path.parent.relative_to(saliency_dir)}")
        if evaluated:
            header = {"evaluation run": predict_run, "external evaluation of run": f"{run_id} ({source.info.run_name})",
                      "model": model_name, "folds": tags["dlm_ml.folds"], "flip_tta": str(cfg.flip_tta),
                      "cohort": str(cohort.root), "cohort fingerprint": fingerprint,
                      "thresholds": "none (the training readers' operating points do not transfer to another cohort)",
                      "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            outcome["evaluation"] = evaluate_into_run(client, predict_run, labelled, cohort, None,
                                                      out_dir / "evaluation", evaluation_cfg=cfg.evaluation,
                                                      header=header, model_name=model_name)
    print(f"{len(predictions)} lesions predicted by run {run_id}'s fold models {tags['dlm_ml.folds']}: "
          f"{out_dir / 'predictions.csv'} (MLflow run {predict_run})")
    return outcome


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    with command_errors("dlm-predict", refused=(ValueError,)):  # refused input: the reason, not a traceback
        predict(cfg)


if __name__ == "__main__":
    main()
