"""External validation of a training run: each fold's model alone against the fold ensemble (with and
without flip test-time augmentation) on a second synthetic cohort of another seed and site.

Uses what ``dlm-predict`` uses (the run's recorded preprocessing, its MLflow fold ensemble) and
prints, per predictor, the clustered AUC (Obuchowski, patients as clusters) with its 95 % CI and the
Brier score on the new cohort, then the readers' AUCs on the same lesions.

Usage::

    python benchmarks/external_validation.py --run-id RUN [--tracking-uri sqlite:///outputs/mlflow/mlflow.db]
        [--preset default] [--n-patients 60] [--seed 7] [--site S9] [--workers 2]

Without ``--run-id``, the newest finished ``demo`` run of the store (what ``make demo`` trains).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from dlm_ml.cli.predict_inputs import prediction_cohort, run_patches
from dlm_ml.data.synthetic import generate_cohort, make_config
from dlm_ml.models.cohort_prediction import ensemble_covariates
from dlm_ml.models.ensemble import FoldEnsemble
from dlm_ml.stats import clustered_auc
from dlm_ml.tracking.ensemble_model import download_fold_ensemble, trained_run


def _latest_demo_run(client: MlflowClient) -> str:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`dlm_ml.role` = 'train' and attributes.status = 'FINISHED' and "
                              "attributes.run_name = 'demo'", order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit("no finished demo run in the store: run `make demo` or pass --run-id")
    return runs[0].info.run_id


def _row(name: str, pcr: np.ndarray, prob: np.ndarray, patients: np.ndarray) -> str:
    auc = clustered_auc(pcr, prob, patients)
    brier = float(np.mean((prob - pcr) ** 2))
    return f"{name:<34}{auc.auc:7.3f}  ({auc.ci_low:.3f}-{auc.ci_high:.3f}){brier:9.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-id")
    ap.add_argument("--tracking-uri", default="sqlite:///outputs/mlflow/mlflow.db")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--n-patients", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--site", default="S9")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "dlm_ml_external_validation")
    args = ap.parse_args()

    client = MlflowClient(args.tracking_uri)
    run_id = args.run_id or _latest_demo_run(client)
    _, run_cfg = trained_run(client, run_id)
    cohort_dir = args.work_dir / f"{args.preset}_seed{args.seed}_n{args.n_patients}_{args.site}"
    if not cohort_dir.is_dir():
        generate_cohort(cohort_dir, make_config(args.preset, seed=args.seed, n_patients=args.n_patients, **{
            "clinical.sites": [args.site], "clinical.site_weights": [1.0], "clinical.site_ct_noise_hu": [14.0],
            "clinical.site_adc_scale": [1.03]}))
    cohort = prediction_cohort(str(cohort_dir))
    patches = run_patches(run_cfg, cohort, str(args.work_dir / "cache"), args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = FoldEnsemble.load(download_fold_ensemble(client, run_id, tmp))
    covariates = ensemble_covariates(ensemble, cohort, patches.lesions)
    labelled = patches.lesions.pcr.notna().to_numpy()
    pcr = patches.lesions.pcr.to_numpy()[labelled].astype(int)
    patients = patches.lesions.patient_id.to_numpy()[labelled]

    plain = ensemble.predict(patches.image, patches.present, covariates)
    tta = ensemble.predict(patches.image, patches.present, covariates, flip_tta=True)
    print(f"run {run_id} ({ensemble.model_name}) on {cohort_dir.name}: {labelled.sum()} lesions, "
          f"{len(set(patients))} patients, site {args.site}")
    print(f"{'predictor':<34}{'AUC':>7}  (95% CI, clustered)   Brier")
    for j, fold in enumerate(plain.folds):
        print(_row(f"fold {fold} model alone", pcr, plain.calibrated[labelled, j], patients))
    print(_row(f"ensemble of {len(plain.folds)} folds", pcr, plain.prob_pcr[labelled], patients))
    print(_row("ensemble, flip TTA", pcr, tta.prob_pcr[labelled], patients))
    readings = cohort.readings
    keyed = patches.lesions[labelled].reset_index(drop=True)
    for reader_id, reads in readings.groupby("reader_id", sort=True):
        scores = keyed.merge(reads, on=["patient_id", "lesion_id"], how="left").score.to_numpy(float)
        ok = ~np.isnan(scores)
        auc = clustered_auc(pcr[ok], scores[ok], patients[ok])
        print(f"{'reader ' + str(reader_id):<34}{auc.auc:7.3f}  ({auc.ci_low:.3f}-{auc.ci_high:.3f})")


if __name__ == "__main__":
    main()
