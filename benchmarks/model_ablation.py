"""Model ablation: every model design on the same cohort, folds and seed, against the ceiling.

For each synthetic preset (default: ``default`` and ``null``), every variant is trained by the real
fold loop (:func:`dlm_ml.training.cross_validation.cross_validate`) on the same patient-grouped
folds, with the composed ``dlm-train`` configuration plus the variant's overrides. Printed per
variant: out-of-fold AUC with a patient-bootstrap 95 % CI, the paired clustered (Obuchowski) test
against the stacked CNN on the same lesions, the calibration slope, and training seconds per fold.

The **ceiling** row is the AUC of the generator's latent response (``truth/lesions.csv``, read here
and never by training): what a model that recovered the imaging-visible response exactly would
reach (pCR also depends on a latent no image shows, and on noise, so the ceiling is below 1 unless
the preset couples pCR to the visible response alone).

    python benchmarks/model_ablation.py                        # both presets, every variant
    python benchmarks/model_ablation.py --presets default --variants stacked_cnn concat_delta
    python benchmarks/model_ablation.py --workers 2            # two variants at a time, 1 thread each

Results are also written as CSV to ``outputs/benchmarks/model_ablation_<preset>.csv`` (and the
out-of-fold predictions beside them), so a long run can be read while it goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.cohort import schema
from dlm_ml.data.covariates import lesion_covariates
from dlm_ml.data.folds import make_folds
from dlm_ml.data.patches import build_patches
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.data.registration import registration_config_from_cfg
from dlm_ml.stats import calibration_intercept_slope, cluster_bootstrap_auc, clustered_auc_difference
from dlm_ml.training.cross_validation import cross_validate
from dlm_ml.training.recorder import MemoryFoldRecorder
from dlm_ml.utils.atomic import atomic_write_csv
from dlm_ml.utils.parallel import parallel_map

#: name → (description, dlm-train overrides). The first is the reference of the paired tests.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "stacked_cnn": ("stacked-channel CNN (4 channels)", ["model=small_cnn"]),
    "concat_delta": ("shared encoder, concat + delta", ["model=longitudinal"]),
    "attention": ("shared encoder, attention", ["model=longitudinal_attention"]),
    "masked_pool": ("shared encoder, masked mean/var pool", ["model=longitudinal_pool"]),
    "concat_delta+cov": ("concat + delta, covariates (concat)", ["model=longitudinal", "data/covariates=clinical"]),
    "attention+cov": ("attention, covariates (FiLM)",
                      ["model=longitudinal_attention", "data/covariates=clinical", "model.net.covariate_fusion=film"]),
    "masked_pool+cov": ("masked pool, covariates (concat)", ["model=longitudinal_pool", "data/covariates=clinical"]),
    "presurgery_only": ("concat + delta, presurgery only",
                        ["model=longitudinal", "data.patches.timepoints=[presurgery]"]),
    "adc_only": ("concat + delta, ADC only", ["model=longitudinal", "data.patches.modalities=[adc]"]),
    "covariates_only": ("covariates only (logistic)", ["model=covariates_only", "data/covariates=clinical"]),
}
REFERENCE = "stacked_cnn"


def compose_train(root: Path, preset: str, seed: int, overrides: list[str], stamp: str = "prepare"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={root}", f"data.synthetic.preset={preset!r}",
                                          f"seed={seed}", "trainer=cpu", *overrides])
    with open_dict(cfg):
        # A folder of its own per invocation: the fold loop resumes from a checkpoint it finds.
        cfg.paths.output_dir = str(root / "outputs" / "benchmarks" / "model_ablation_runs" / stamp)
        # Per-epoch logs of many folds are noise here; the summary table is the output.
        cfg.trainer.enable_progress_bar = False
    return cfg


def run_variant(args: tuple) -> dict:
    """Train one variant on every fold; returns its out-of-fold predictions and timing."""
    root, preset, seed, name, overrides, threads, stamp = args
    torch.set_num_threads(threads)
    cfg = compose_train(root, preset, seed, overrides, stamp)
    cohort, _ = prepare_cohort(cfg.data)
    patches = build_patches(cohort, hydra.utils.instantiate(cfg.data.patches), cfg.paths.cache_dir, num_workers=1,
                            registration=registration_config_from_cfg(cfg.data))
    covariates = lesion_covariates(cohort, patches.lesions, hydra.utils.instantiate(cfg.data.covariates))
    # Folds depend on the lesions and the seed only: every variant gets the same split.
    folds = make_folds(patches.lesions, int(cfg.data.n_folds), seed)
    out_dir = Path(cfg.paths.output_dir) / preset / name
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        result = cross_validate(cfg, patches, folds, MemoryFoldRecorder(), out_dir, covariates)
    seconds = time.perf_counter() - started
    return {"name": name, "predictions": result.predictions, "seconds_per_fold": seconds / int(cfg.data.n_folds)}


def ceiling_rows(cohort_dir: Path, lesions: pd.DataFrame, n_boot: int) -> list[dict]:
    """AUC of the generator's latents (truth/, never an input) on the benchmark's lesions."""
    truth = pd.read_csv(cohort_dir / schema.TRUTH_DIR / "lesions.csv", dtype={"patient_id": str, "lesion_id": str})
    table = lesions.merge(truth[["patient_id", "lesion_id", "latent_response"]],
                          on=["patient_id", "lesion_id"], how="left", validate="1:1")
    if table.latent_response.isna().any():
        raise ValueError(f"{cohort_dir}/truth/lesions.csv lacks lesions of the benchmark")
    ci = cluster_bootstrap_auc(table.pcr.to_numpy(), table.latent_response.to_numpy(), table.patient_id.to_numpy(),
                               n_boot=n_boot)
    return [{"variant": "ceiling: the generator's latent response", "auc": ci.estimate, "ci_low": ci.ci_low,
             "ci_high": ci.ci_high}]


def summarise(results: list[dict], n_boot: int) -> pd.DataFrame:
    reference = next((r for r in results if r["name"] == REFERENCE), None)
    rows = []
    for r in results:
        p = r["predictions"]
        y, score, patients = p.pcr.to_numpy(), p.prob_pcr.to_numpy(), p.patient_id.to_numpy()
        ci = cluster_bootstrap_auc(y, score, patients, n_boot=n_boot)
        calibration = calibration_intercept_slope(y, score)
        row = {"variant": r["name"], "description": VARIANTS[r["name"]][0], "auc": ci.estimate,
               "ci_low": ci.ci_low, "ci_high": ci.ci_high, "calibration_slope": calibration.slope,
               "calibration_intercept": calibration.intercept, "seconds_per_fold": r["seconds_per_fold"],
               "diff_vs_stacked": np.nan, "p_vs_stacked": np.nan}
        if reference is not None and r is not reference:
            ref = reference["predictions"]
            paired = p.merge(ref, on=["patient_id", "lesion_id"], suffixes=("", "_ref"), validate="1:1")
            test = clustered_auc_difference(paired.pcr.to_numpy(), paired.prob_pcr.to_numpy(),
                                            paired.prob_pcr_ref.to_numpy(), paired.patient_id.to_numpy())
            row.update(diff_vs_stacked=test.diff, p_vs_stacked=test.p_value)
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, preset: str, n_lesions: int, n_patients: int) -> str:
    lines = [f"### preset `{preset}` ({n_patients} patients, {n_lesions} lesions)", "",
             "| variant | AUC (95 % CI, patient bootstrap) | Δ AUC vs stacked (p, clustered) | calibration slope "
             "| s / fold |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        auc = f"{row.auc:.3f} ({row.ci_low:.3f}–{row.ci_high:.3f})"
        if str(row.variant).startswith("ceiling"):
            lines.append(f"| {row.variant} | {auc} | | | |")
            continue
        diff = ("reference" if np.isnan(row.diff_vs_stacked)
                else f"{row.diff_vs_stacked:+.3f} (p = {row.p_vs_stacked:.3f})")
        lines.append(f"| {row.description} | {auc} | {diff} | {row.calibration_slope:.2f} "
                     f"| {row.seconds_per_fold:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["default", "null"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="variants trained at once (each on 1 thread)")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="paths.root_dir (cohorts and caches)")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="overrides for every variant, e.g. trainer.max_epochs=20")
    args = parser.parse_args(argv)
    root = args.root.absolute()
    out = root / "outputs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        # Prepare (synthesise, register, cut) once, in this process, before the variants fan out.
        cfg = compose_train(root, preset, args.seed, args.extra)
        cohort, _ = prepare_cohort(cfg.data)
        build_patches(cohort, hydra.utils.instantiate(cfg.data.patches), cfg.paths.cache_dir,
                      num_workers=int(cfg.data.preprocess_workers), registration=registration_config_from_cfg(cfg.data))
        threads = 1 if args.workers > 1 else max(torch.get_num_threads(), 1)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        jobs = [(root, preset, args.seed, name, [*args.extra, *VARIANTS[name][1]], threads, stamp)
                for name in args.variants]
        results = parallel_map(run_variant, jobs, workers=args.workers, desc=f"{preset}: variants", unit="model")
        for r in results:
            atomic_write_csv(out / f"model_ablation_{preset}_{r['name']}_predictions.csv", r["predictions"])
        lesions = results[0]["predictions"]
        table = pd.concat([summarise(results, args.n_boot),
                           pd.DataFrame(ceiling_rows(Path(cfg.data.cohort_dir), lesions, args.n_boot))],
                          ignore_index=True)
        atomic_write_csv(out / f"model_ablation_{preset}.csv", table)
        print(markdown(table, preset, len(lesions), lesions.patient_id.nunique()), flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
