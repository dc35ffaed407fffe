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
    python benchmarks/model_ablation.py --reference concat_delta --variants concat_delta clinical_logistic \
        radiomics rule_disappeared rule_shrinkage rule_adc_change  # the best network against the baselines

With ``--readers`` the table also holds each radiologist's AUC and the paired clustered test of the
reader against the reference model on the lesions that reader read.

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
from dlm_ml.cli.train_inputs import is_tabular, training_inputs
from dlm_ml.data.cohort import schema
from dlm_ml.data.folds import make_folds
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.stats import calibration_intercept_slope, cluster_bootstrap_auc, clustered_auc_difference
from dlm_ml.training.cross_validation import cross_validate
from dlm_ml.training.posthoc import calibrate_folds
from dlm_ml.training.recorder import MemoryFoldRecorder
from dlm_ml.training.tabular import cross_validate_tabular
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
    "concat_delta+platt": ("concat + delta, Platt-calibrated", ["model=longitudinal", "calibration=platt"]),
    # The baselines a clinician would name (no network), in the same folds.
    "clinical_logistic": ("baseline: clinical logistic (nested C)", ["model=clinical_logistic"]),
    "radiomics": ("baseline: radiomics + deltas (nested k, C)", ["model=radiomics"]),
    "rule_disappeared": ("baseline: disappeared => pCR", ["model=rule_disappeared"]),
    "rule_shrinkage": ("baseline: shrinkage ratio", ["model=rule_shrinkage"]),
    "rule_adc_change": ("baseline: ADC change", ["model=rule_adc_change"]),
}
#: The default reference of the paired tests (``--reference`` chooses another).
REFERENCE = "stacked_cnn"


def compose_train(root: Path, preset: str, seed: int, overrides: list[str], stamp: str = "prepare"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={root}", f"data.synthetic.preset={preset!r}",
                                          f"seed={seed}", "trainer=cpu", *overrides])
    with open_dict(cfg):
        # A folder of its own per invocation: the fold loop refuses a fold folder another run wrote into.
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
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        inputs = training_inputs(cfg, cohort)  # cached: prepared once before the variants fan out
    # Folds depend on the lesions and the seed only: every variant gets the same split.
    folds = make_folds(inputs.lesions, int(cfg.data.n_folds), seed)
    out_dir = Path(cfg.paths.output_dir) / preset / name
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if is_tabular(cfg):
            result = cross_validate_tabular(cfg, inputs.lesions, inputs.features, folds, MemoryFoldRecorder(), out_dir)
        else:
            result = cross_validate(cfg, inputs.patches, folds, MemoryFoldRecorder(), out_dir, inputs.covariates,
                                    resuming=False)
        result, _ = calibrate_folds(result, hydra.utils.instantiate(cfg.calibration))
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


def _paired(a: pd.DataFrame, b: pd.DataFrame, score_b: str = "prob_pcr") -> tuple[float, float]:
    """Clustered (Obuchowski) AUC difference a − b and its p on the lesions both scored."""
    paired = a.merge(b[["patient_id", "lesion_id", score_b]].rename(columns={score_b: "score_b"}),
                     on=["patient_id", "lesion_id"], validate="1:1")
    test = clustered_auc_difference(paired.pcr.to_numpy(), paired.prob_pcr.to_numpy(), paired.score_b.to_numpy(),
                                    paired.patient_id.to_numpy())
    return test.diff, test.p_value


def summarise(results: list[dict], n_boot: int, reference: str = REFERENCE) -> pd.DataFrame:
    ref = next((r for r in results if r["name"] == reference), None)
    rows = []
    for r in results:
        p = r["predictions"]
        y, score, patients = p.pcr.to_numpy(), p.prob_pcr.to_numpy(), p.patient_id.to_numpy()
        ci = cluster_bootstrap_auc(y, score, patients, n_boot=n_boot)
        calibration = calibration_intercept_slope(y, score)
        row = {"variant": r["name"], "description": VARIANTS[r["name"]][0], "auc": ci.estimate,
               "ci_low": ci.ci_low, "ci_high": ci.ci_high, "calibration_slope": calibration.slope,
               "calibration_intercept": calibration.intercept, "seconds_per_fold": r["seconds_per_fold"],
               "diff_vs_reference": np.nan, "p_vs_reference": np.nan}
        if ref is not None and r is not ref:
            row["diff_vs_reference"], row["p_vs_reference"] = _paired(p, ref["predictions"])
        rows.append(row)
    return pd.DataFrame(rows)


def reader_rows(readings: pd.DataFrame, reference: pd.DataFrame, n_boot: int) -> list[dict]:
    """Each reader's AUC (their confidence score) on the lesions they read, and reader − reference
    model by the clustered paired test on those lesions."""
    rows = []
    for reader, reads in readings.groupby("reader_id", sort=True):
        table = reference.merge(reads[["patient_id", "lesion_id", "score"]], on=["patient_id", "lesion_id"])
        ci = cluster_bootstrap_auc(table.pcr.to_numpy(), table.score.to_numpy(), table.patient_id.to_numpy(),
                                   n_boot=n_boot)
        reader_scores = table.assign(prob_pcr=table.score)
        diff, p = _paired(reader_scores, table, "prob_pcr")
        rows.append({"variant": f"reader {reader}", "description": f"radiologist {reader} (score)",
                     "auc": ci.estimate, "ci_low": ci.ci_low, "ci_high": ci.ci_high, "diff_vs_reference": diff,
                     "p_vs_reference": p})
    return rows


def markdown(table: pd.DataFrame, preset: str, n_lesions: int, n_patients: int, reference: str = REFERENCE) -> str:
    lines = [f"### preset `{preset}` ({n_patients} patients, {n_lesions} lesions)", "",
             f"| variant | AUC (95 % CI, patient bootstrap) | Δ AUC vs {VARIANTS[reference][0]} (p, clustered) "
             "| calibration slope | s / fold |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        auc = f"{row.auc:.3f} ({row.ci_low:.3f}–{row.ci_high:.3f})"
        if str(row.variant).startswith("ceiling"):
            lines.append(f"| {row.variant} | {auc} | | | |")
            continue
        diff = ("reference" if np.isnan(row.diff_vs_reference)
                else f"{row.diff_vs_reference:+.3f} (p = {row.p_vs_reference:.3f})")
        slope = "" if pd.isna(row.calibration_slope) else f"{row.calibration_slope:.2f}"
        secs = "" if pd.isna(row.seconds_per_fold) else f"{row.seconds_per_fold:.0f}"
        lines.append(f"| {row.description} | {auc} | {diff} | {slope} | {secs} |")
    return "\n".join(lines)


def prepare_inputs(root: Path, preset: str, seed: int, extra: list[str], variants: list[str]) -> dict[str, float]:
    """Synthesise, register and cut patches / extract features once per kind of input, in this
    process, before the variants fan out (they then read the caches). Returns, per kind of
    radiomics input (``radiomics``, ``roi_means``), the seconds per lesion of the extraction that
    computed it (read from its cache manifest when cached)."""
    timing: dict[str, float] = {}
    prepared = set()
    for name in variants:
        cfg = compose_train(root, preset, seed, [*extra, *VARIANTS[name][1]])
        kind = tuple(hydra.utils.instantiate(cfg.model.estimator).inputs) if is_tabular(cfg) else ("patches",)
        if kind in prepared:
            continue
        prepared.add(kind)
        cohort, _ = prepare_cohort(cfg.data)
        inputs = training_inputs(cfg, cohort)
        if inputs.radiomics_seconds_per_lesion is not None:
            timing[" + ".join(kind)] = inputs.radiomics_seconds_per_lesion
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["default", "null"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--reference", default=REFERENCE, choices=list(VARIANTS),
                        help="the variant every other is tested against (default: %(default)s)")
    parser.add_argument("--readers", action="store_true", help="add the radiologists' rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="variants trained at once (each on 1 thread)")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="paths.root_dir (cohorts and caches)")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="overrides for every variant, e.g. trainer.max_epochs=20")
    args = parser.parse_args(argv)
    if args.reference not in args.variants:
        parser.error(f"--reference {args.reference} must be one of the --variants")
    root = args.root.absolute()
    out = root / "outputs" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        timing = prepare_inputs(root, preset, args.seed, args.extra, args.variants)
        threads = 1 if args.workers > 1 else max(torch.get_num_threads(), 1)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        jobs = [(root, preset, args.seed, name, [*args.extra, *VARIANTS[name][1]], threads, stamp)
                for name in args.variants]
        results = parallel_map(run_variant, jobs, workers=args.workers, desc=f"{preset}: variants", unit="model")
        for r in results:
            atomic_write_csv(out / f"model_ablation_{preset}_{r['name']}_predictions.csv", r["predictions"])
        reference = next(r for r in results if r["name"] == args.reference)["predictions"]
        cfg = compose_train(root, preset, args.seed, args.extra)
        parts = [summarise(results, args.n_boot, args.reference)]
        if args.readers:
            cohort, _ = prepare_cohort(cfg.data)
            parts.append(pd.DataFrame(reader_rows(cohort.readings, reference, args.n_boot)))
        parts.append(pd.DataFrame(ceiling_rows(Path(cfg.data.cohort_dir), reference, args.n_boot)))
        table = pd.concat(parts, ignore_index=True)
        atomic_write_csv(out / f"model_ablation_{preset}.csv", table)
        print(markdown(table, preset, len(reference), reference.patient_id.nunique(), args.reference), flush=True)
        for kind, seconds in timing.items():
            print(f"{kind} extraction: {seconds:.2f} s per lesion (wall clock, "
                  f"{cfg.data.preprocess_workers} worker processes)")
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
