"""Write a synthetic cohort to disk (docs/design.md §3 layout); the command is :mod:`dlm_ml.cli.synth`."""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import yaml

import dlm_ml
from dlm_ml.data.cohort import schema
from dlm_ml.data.imaging.imageio import write_image
from dlm_ml.data.synthetic.anatomy import render
from dlm_ml.data.synthetic.biology import PatientSpec, liver_mask_relpath, mask_relpath
from dlm_ml.data.synthetic.config import SynthConfig
from dlm_ml.data.synthetic.tables import PUBLIC_TABLES, TRUTH_TABLES, simulate_cohort, summarize
from dlm_ml.utils.atomic import atomic_write_csv, atomic_write_json, atomic_write_text
from dlm_ml.utils.parallel import available_cores, parallel_map

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
        np.rint(vol, out=vol)  # in place: the same values as np.clip(np.rint(vol), ...), no new volumes
        if image.modality == "ct":
            arr = np.clip(vol, *CT_RANGE, out=vol).astype(np.int16)
        else:
            arr = np.clip(vol, 0, adc_max, out=vol).astype(np.uint16)
        write_image(image.grid.to_sitk(arr), root_p / image.path, compress=image.path.endswith(".gz"))
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
    # A worker costs ~1 s to start (spawn + imports): give each >= ~3 s of work, so that a
    # second one pays for its start. Rendering and writing cost ≈ 2.5e-8 s per voxel on one core
    # when images are moved (every voxel's anatomy coordinates are then computed in 3-D;
    # measured on the default preset, 2026-12-02), about half that when they are not.
    def spacing(g):
        if not config.geometry.vary_grids:
            return np.asarray(g.spacing_mm)
        inplane, thick = np.mean(g.inplane_spacing_mm), np.mean(g.slice_spacing_mm)
        return np.array([inplane, inplane, thick])

    voxels = sum(3 * np.prod(np.round(np.asarray(g.fov_mm) / spacing(g)))
                 for g in (config.geometry.ct, config.geometry.adc))
    per_voxel = 2.5e-8 if config.geometry.misalignment or config.geometry.vary_grids else 1.2e-8
    seconds = config.n_patients * voxels * per_voxel
    return int(max(1, min(cpus, 8, seconds // 3)))


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")


def _rename_unless_written(tmp: Path, out: Path) -> None:
    """Move the finished cohort ``tmp`` to ``out`` unless a cohort appeared there meanwhile (another
    process of a sweep writing the same one): a folder others may be reading is never replaced
    without ``overwrite``. The rename fails on a non-empty target, so the check has no race."""
    try:
        tmp.rename(out)
    except OSError as err:
        if out.is_dir() and any(out.iterdir()):
            raise FileExistsError(f"{out} was written by another process while this one generated it") from err
        raise


def generate_cohort(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write the cohort ``config`` describes to ``out_dir`` and return its path.

    Deterministic for a given config. Built in a hidden sibling folder and renamed
    into place at the end, so an interrupted run never leaves a cohort that looks
    complete. Refuses a non-empty ``out_dir`` unless ``overwrite``, also one that another process
    finished meanwhile (``FileExistsError``; its folder is left as it is). ``truth/config.json``
    records every setting (:func:`config_differences` compares a cohort with a config).
    """
    out = Path(out_dir).absolute()
    _check_target(out, overwrite)
    sim = simulate_cohort(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        # Looked up here, not bound at import, so a test can replace render_patient.
        render = functools.partial(render_patient, root=str(tmp), adc_max=config.intensity.adc_max)
        parallel_map(render, sim.specs, workers=_workers(config), desc="dlm-synth", unit="patient",
                     progress=progress)
        for key, name in PUBLIC_TABLES.items():
            atomic_write_csv(tmp / name, sim.tables[key])
        truth = tmp / schema.TRUTH_DIR
        for key, name in TRUTH_TABLES.items():
            atomic_write_csv(truth / name, sim.tables[key])
        atomic_write_text(truth / "config.json", config.to_json() + "\n")
        atomic_write_json(truth / "summary.json", summarize(sim.tables))
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
        atomic_write_text(tmp / schema.COHORT_YAML, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        if overwrite and out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            _rename_unless_written(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def disk_usage(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


#: Generator settings that do not change what is written.
OUTPUT_NEUTRAL_KEYS = frozenset({"n_workers"})


def config_differences(root: str | os.PathLike, config: SynthConfig) -> list[str]:
    """How the synthetic cohort at ``root`` differs from the one ``config`` generates, read from the
    settings it records (``truth/config.json``, written with the cohort): one ``key: recorded X,
    asked Y`` per differing setting (``n_workers`` aside: it does not change the output), or one
    line saying it records none (not a cohort of this generator). Empty: the same cohort."""
    path = Path(root) / schema.TRUTH_DIR / "config.json"
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return [f"no generation settings recorded ({path}: {err.__class__.__name__})"]
    asked = _flatten(json.loads(config.to_json()))
    recorded = _flatten(recorded)
    return [f"{key}: recorded {json.dumps(recorded.get(key))}, asked {json.dumps(asked.get(key))}"
            for key in sorted(set(asked) | set(recorded))
            if key not in OUTPUT_NEUTRAL_KEYS and recorded.get(key) != asked.get(key)]


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
