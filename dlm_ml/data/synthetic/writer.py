"""Write a synthetic cohort to disk (DESIGN.md §3 layout) and the ``dlm-synth`` CLI."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

import dlm_ml
from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging.imageio import write_image
from dlm_ml.data.synthetic.anatomy import render
from dlm_ml.data.synthetic.biology import PatientSpec, liver_mask_relpath, mask_relpath
from dlm_ml.data.synthetic.config import PRESETS, SynthConfig, make_config
from dlm_ml.data.synthetic.geometry import image_relpath
from dlm_ml.data.synthetic.tables import PUBLIC_TABLES, TRUTH_TABLES, format_summary, simulate_cohort, summarize
from dlm_ml.utils.parallel import available_cores, pool_size

CT_RANGE = (-1024, 3071)


def render_patient(spec: PatientSpec, root: str, adc_max: float) -> int:
    """Render and write one patient's images and masks under ``root``; returns the
    number of files written. Each (timepoint, modality) has its own noise stream,
    spawned in a fixed order, so a missing image never changes the others."""
    root_p = Path(root)
    seeds = spec.render_seed.spawn(len(spec.images))
    written = 0
    for image, ss in zip(spec.images, seeds):
        if not image.present:
            continue
        key = (image.timepoint, image.modality)
        is_ref = key == (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY)
        out = render(spec.anatomy, spec.tissues[key], spec.lesion_draws[key], image.grid, image.pose,
                     spec.edge_mm, np.random.default_rng(ss), with_masks=is_ref)
        vol = out[0] if is_ref else out
        if image.modality == "ct":
            arr = np.clip(np.rint(vol), *CT_RANGE).astype(np.int16)
        else:
            arr = np.clip(np.rint(vol), 0, adc_max).astype(np.uint16)
        write_image(image.grid.to_sitk(arr), root_p / image_relpath(spec.patient_id, *key), compress=True)
        written += 1
        if is_ref:  # masks on the baseline CT grid: lesion labels (public), liver (truth)
            write_image(image.grid.to_sitk(out[2]), root_p / mask_relpath(spec.patient_id), compress=True)
            write_image(image.grid.to_sitk(out[1]), root_p / liver_mask_relpath(spec.patient_id), compress=True)
            written += 2
    return written


def _workers(config: SynthConfig) -> int:
    if config.n_workers > 0:
        return config.n_workers
    cpus = available_cores()
    # A worker costs ~1.5 s to start (spawn + imports): give each >= ~5 s of work.
    # Rendering + compression cost ≈ 8e-8 s per voxel on one core (≈ 2e-7 when images are
    # moved: every voxel's anatomy coordinates are then computed in 3-D).
    def spacing(g):
        if not config.geometry.vary_grids:
            return np.asarray(g.spacing_mm)
        inplane, thick = np.mean(g.inplane_spacing_mm), np.mean(g.slice_spacing_mm)
        return np.array([inplane, inplane, thick])

    voxels = sum(3 * np.prod(np.round(np.asarray(g.fov_mm) / spacing(g)))
                 for g in (config.geometry.ct, config.geometry.adc))
    per_voxel = 2e-7 if config.geometry.misalignment or config.geometry.vary_grids else 8e-8
    seconds = config.n_patients * voxels * per_voxel
    return int(max(1, min(cpus, 8, seconds // 5)))


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, lineterminator="\n")


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")


def generate_cohort(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write the cohort ``config`` describes to ``out_dir`` and return its path.

    Deterministic for a given config. Built in a hidden sibling folder and renamed
    into place at the end, so an interrupted run never leaves a cohort that looks
    complete. Refuses a non-empty ``out_dir`` unless ``overwrite``.
    """
    out = Path(out_dir).absolute()
    _check_target(out, overwrite)
    sim = simulate_cohort(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        n_workers = pool_size(_workers(config), len(sim.specs))
        adc_max = config.intensity.adc_max
        bar = tqdm(total=len(sim.specs), desc="dlm-synth", unit="patient", disable=not progress)
        if n_workers == 1:
            for spec in sim.specs:
                render_patient(spec, str(tmp), adc_max)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # safe whatever the parent imported (torch, threads)
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
                futures = [pool.submit(render_patient, spec, str(tmp), adc_max) for spec in sim.specs]
                for fut in as_completed(futures):
                    fut.result()
                    bar.update()
        bar.close()
        for key, name in PUBLIC_TABLES.items():
            _write_csv(tmp / name, sim.tables[key])
        truth = tmp / schema.TRUTH_DIR
        for key, name in TRUTH_TABLES.items():
            _write_csv(truth / name, sim.tables[key])
        (truth / "config.json").write_text(config.to_json() + "\n")
        (truth / "summary.json").write_text(json.dumps(summarize(sim.tables), indent=2, sort_keys=True) + "\n")
        meta = {
            "name": config.name,
            "version": "1",
            "timepoints": list(schema.TIMEPOINTS),
            "modalities": list(schema.MODALITIES),
            "description": (f"Synthetic cohort from dlm_ml.data.synthetic (dlm_ml {dlm_ml.__version__}), "
                            f"preset {config.preset!r}, seed {config.seed}, {config.n_patients} patients. "
                            + ("Every image has its own grid and pose: images must be registered to the "
                               "baseline CT (true transforms and lesion positions per image under truth/). "
                               if config.geometry.misalignment else "Images are aligned (misalignment off). ")
                            + f"Hidden truth under {schema.TRUTH_DIR}/ (config.json rebuilds it)."),
            "synthetic": {"preset": config.preset, "seed": config.seed, "n_patients": config.n_patients},
        }
        (tmp / schema.COHORT_YAML).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def disk_usage(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlm-synth", description="Generate a synthetic dlm_ml cohort.")
    parser.add_argument("out_dir", help="cohort folder to create")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--n-patients", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. effects.adc_change=0.2 (repeatable)")
    parser.add_argument("--workers", type=int, help="processes (default: automatic; output is the same)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    for key, value in (("n_patients", args.n_patients), ("seed", args.seed), ("n_workers", args.workers)):
        if value is not None:
            overrides[key] = value
    try:
        config = make_config(args.preset, **overrides)
    except (KeyError, ValueError) as err:
        parser.error(str(err.args[0] if isinstance(err, KeyError) else err))
    start = time.perf_counter()
    try:
        out = generate_cohort(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    except FileExistsError as err:
        print(f"dlm-synth: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    summary = json.loads((out / schema.TRUTH_DIR / "summary.json").read_text())
    print(f"wrote {out} (preset {config.preset}, seed {config.seed}) in {elapsed:.1f} s, "
          f"{disk_usage(out) / 1e6:.1f} MB")
    print(format_summary(summary))
    return 0
