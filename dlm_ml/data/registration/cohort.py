"""Register every image of a cohort into its patient's baseline CT space, cached by content.

Chains (the transform of an image maps baseline CT physical points to the image's
physical points)::

    later CT      : baseline CT ← CT                      (ct_stages)
    ADC of a visit: baseline CT ← CT of the visit ← ADC   (adc_stages, composed with the CT's)
    baseline ADC  : baseline CT ← ADC                     (adc_stages)

An ADC map whose visit has no CT is registered directly to the baseline CT.

Cache layout under ``<cache_dir>/registration/``: ``pairs/<key>.tfm`` + ``.json`` for each
direct registration, key = hash of both files' contents and of the settings that shape the
result; ``composed/<key>.tfm`` + ``.json`` for each image's composed transform, key = hash
of its chain. The JSON holds the metrics; whether they flag the registration is decided
when read, with the thresholds in force.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dlm_ml.data.cohort import schema
from dlm_ml.data.cohort.fingerprint import cohort_file_digests
from dlm_ml.data.imaging.imageio import read_image
from dlm_ml.data.imaging.integrity import ImageIntegrityError
from dlm_ml.data.registration.config import RegistrationConfig
from dlm_ml.data.registration.pair import PairResult, WorkingImage, coarsen, prepare, register_pair
from dlm_ml.utils.atomic import atomic_path, atomic_write_text
from dlm_ml.utils.hashing import file_sha256, payload_digest
from dlm_ml.utils.parallel import available_cores, parallel_map, pool_size

# Bump when the registration algorithm changes, so cached transforms are never reused.
REGISTRATION_ALGORITHM_VERSION = 5  # 2: lesion_correlation measured and recorded; 3: no 2 mm levels,
# deformable results checked through their displacement field; 4: image gradients at the sampled points
# (StageConfig.gradient_filter false), 10 B-spline iterations; 5: ADC → CT on a 4 mm working grid
# (adc_working_spacing_mm; a CT's 4 mm copy coarsened from its 2 mm one), body masks dilated by 4 mm
BASE = (schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY)
# seconds: time the direct registration took when it ran (also for a cached one);
# patient_seconds: wall time of this run for the patient (near 0 when all was cached).
TABLE_COLUMNS = ["patient_id", "timepoint", "modality", "fixed", "transform_path", "transform_sha256",
                 "pair_transform_path", "metric", "metric_before", "jacobian_min", "jacobian_max", "overlap",
                 "lesion_correlation", "flagged", "reasons", "seconds", "cached", "patient_seconds"]


def write_transform(transform: sitk.Transform, path: Path) -> str:
    """Write an ITK transform file atomically; returns its SHA-256."""
    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))
    return file_sha256(path)


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as err:
        raise ValueError(f"cannot read transform {path}: {err}") from err


Key = tuple[str, str]  # (timepoint, modality)


def chain_for(timepoint: str, modality: str, available: set[Key]) -> list[tuple[Key, Key]]:
    """Direct registrations (fixed, moving) whose composition brings (timepoint, modality) into
    baseline CT space, outermost (closest to the baseline) first."""
    if (timepoint, modality) == BASE:
        return []
    if modality == schema.REFERENCE_MODALITY or timepoint == schema.REFERENCE_TIMEPOINT:
        return [(BASE, (timepoint, modality))]
    visit_ct = (timepoint, schema.REFERENCE_MODALITY)
    if visit_ct in available:
        return [(BASE, visit_ct), (visit_ct, (timepoint, modality))]
    return [(BASE, (timepoint, modality))]


@dataclass
class PatientJob:
    """Everything a worker needs to register one patient (picklable)."""

    patient_id: str
    images: dict[tuple[str, str], tuple[str, str]]  # (timepoint, modality) → (absolute path, sha256)
    wanted: list[tuple[str, str]]
    lesion_centres: list[tuple[float, float, float]]  # baseline CT physical, mm
    config: RegistrationConfig
    cache_dir: str


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def _pair_record(result: PairResult) -> dict:
    return {"metric": result.metric, "metric_before": result.metric_before, "jacobian_min": result.jacobian_min,
            "jacobian_max": result.jacobian_max, "overlap": result.overlap,
            "lesion_correlation": result.lesion_correlation, "error": result.error,
            "seconds": result.seconds,
            "stages": [vars(s) for s in result.stages]}


def _reasons(record: dict, config: RegistrationConfig, moving_modality: str) -> list[str]:
    """Flags of a stored pair record under the thresholds in force."""
    fake = PairResult(sitk.Transform(), record["metric"], record["metric_before"], record["jacobian_min"],
                      record["jacobian_max"], record["overlap"], error=record.get("error", ""),
                      lesion_correlation=record.get("lesion_correlation", float("nan")))
    return fake.reasons(config.failure, moving_modality)


def register_patient(job: PatientJob) -> list[dict]:
    """Register the images ``job.wanted`` of one patient (using the cache); one table row each."""
    config = job.config
    if BASE not in job.images:
        raise ValueError(f"patient {job.patient_id}: no baseline CT, the space every image is registered into")
    root = Path(job.cache_dir) / "registration"
    working: dict[tuple[tuple[str, str], float], WorkingImage] = {}  # (image, working spacing) → copy

    def work(key, spacing_mm: float) -> WorkingImage:
        if (key, spacing_mm) not in working:
            path = job.images[key][0]
            finest = config.working_spacing_mm
            try:
                if key[1] == "ct" and spacing_mm > finest:
                    # A CT is the only image used at two spacings: CT -> CT at working_spacing_mm,
                    # and fixed image of its visit's ADC at adc_working_spacing_mm. The coarser copy
                    # always comes from the finer one (prepared for it if need be): the same copy
                    # whatever the cache held, and a fraction of the cost of the original.
                    working[(key, spacing_mm)] = coarsen(work(key, finest), config, spacing_mm=spacing_mm)
                else:
                    working[(key, spacing_mm)] = prepare(read_image(path), key[1], config, spacing_mm=spacing_mm)
            except ImageIntegrityError as err:  # a damaged image is the input's error, not a failed registration
                raise ImageIntegrityError(err.path, err.problems, f"patient {job.patient_id}, {_label(key)}") from err
            except (ValueError, RuntimeError) as err:
                raise ValueError(f"patient {job.patient_id}, {_label(key)} ({path}): cannot prepare for "
                                 f"registration: {err}") from err
        return working[(key, spacing_mm)]

    pairs: dict[tuple, dict] = {}  # (fixed, moving) → record with key, path, transform

    def pair(fixed, moving, roi) -> dict:
        if (fixed, moving) in pairs:
            return pairs[(fixed, moving)]
        stages = config.stages_for(moving[1])
        spacing = config.working_spacing_for(moving[1])
        uses_roi = any(s.mask == "lesions" for s in stages)
        # what this pair's result depends on: its own stages and working spacing, not the other modality's
        own = {k: v for k, v in config.key_dict().items()
               if k not in ("failure", "ct_stages", "adc_stages", "bspline", "working_spacing_mm",
                            "adc_working_spacing_mm")}
        key = payload_digest({"version": REGISTRATION_ALGORITHM_VERSION, "fixed": job.images[fixed][1],
                     "moving": job.images[moving][1], "modalities": [fixed[1], moving[1]],
                     "config": {**own, "working_spacing_mm": spacing},
                     "stages": [vars(s) for s in stages],
                     "roi": np.round(np.asarray(roi, float), 1).tolist() if uses_roi and roi is not None else None})
        tfm, meta = root / "pairs" / f"{key}.tfm", root / "pairs" / f"{key}.json"
        cached = tfm.is_file() and meta.is_file()
        if cached:
            record = json.loads(meta.read_text())
            transform = read_transform(tfm)
        else:
            name = f"patient {job.patient_id}: {_label(moving)} → {_label(fixed)}"
            try:
                result = register_pair(work(fixed, spacing), work(moving, spacing), config, roi_mm=roi, name=name)
            except ImageIntegrityError:
                raise
            except ValueError as err:
                # An image that cannot be registered at all (e.g. too few slices to smooth) is a
                # failed registration: flagged with an identity transform, not the end of the run.
                nan = float("nan")
                result = PairResult(sitk.Transform(3, sitk.sitkIdentity), nan, nan, nan, nan, nan, error=str(err))
            transform = result.transform
            record = {"key": key, "patient_id": job.patient_id, "fixed": _label(fixed), "moving": _label(moving),
                      "version": REGISTRATION_ALGORITHM_VERSION, **_pair_record(result)}
            if not result.error:  # failures are recomputed rather than cached
                write_transform(transform, tfm)
                # json, not atomic_write_json: a NaN metric must read back as NaN, not None.
                atomic_write_text(meta, json.dumps(record, indent=2))
        out = {"key": key, "path": tfm, "transform": transform, "record": record, "cached": cached,
               "reasons": _reasons(record, config, moving[1])}
        pairs[(fixed, moving)] = out
        return out

    rows = []
    centres = np.asarray(job.lesion_centres, float).reshape(-1, 3)
    patient_started = time.perf_counter()
    for target in job.wanted:
        if target == BASE or target not in job.images:
            continue
        links = []
        for fixed, moving in chain_for(*target, set(job.images)):
            if fixed == BASE:
                roi = centres
            else:  # lesion centres as the visit's CT sees them, through its registration
                t = pairs[(BASE, fixed)]["transform"]
                roi = np.array([t.TransformPoint(tuple(c)) for c in centres]) if len(centres) else centres
            links.append(pair(fixed, moving, roi))
        # baseline point → (visit CT) → image: the link nearest the image is applied last
        if len(links) == 1:
            composed = links[0]["transform"]
        else:
            composed = sitk.CompositeTransform([links[-1]["transform"], links[0]["transform"]])
            composed.FlattenTransform()
        ckey = payload_digest({"version": REGISTRATION_ALGORITHM_VERSION, "chain": [link["key"] for link in links]})
        ctfm, cmeta = root / "composed" / f"{ckey}.tfm", root / "composed" / f"{ckey}.json"
        if ctfm.is_file() and cmeta.is_file():
            sha = json.loads(cmeta.read_text())["transform_sha256"]
        else:
            sha = write_transform(composed, ctfm)
            atomic_write_text(cmeta, json.dumps({
                "patient_id": job.patient_id, "image": _label(target), "transform_sha256": sha,
                "chain": [link["record"] for link in links]}, indent=2))
        direct = links[-1]
        reasons = list(direct["reasons"])
        for link in links[:-1]:  # a flagged visit CT makes its ADC's composed transform suspect too
            reasons += [f"via {link['record']['moving']}: {r}" for r in link["reasons"]]
        rec = direct["record"]
        rows.append({
            "patient_id": job.patient_id, "timepoint": target[0], "modality": target[1],
            "fixed": rec["fixed"], "transform_path": str(ctfm), "transform_sha256": sha,
            "pair_transform_path": str(direct["path"]), "metric": rec["metric"], "metric_before": rec["metric_before"],
            "jacobian_min": rec["jacobian_min"], "jacobian_max": rec["jacobian_max"], "overlap": rec["overlap"],
            "lesion_correlation": rec.get("lesion_correlation", float("nan")),
            "flagged": bool(reasons), "reasons": "; ".join(reasons),
            "seconds": rec["seconds"], "cached": direct["cached"],
        })
    for row in rows:  # wall time of the whole patient: preparing images, every pair, writing
        row["patient_seconds"] = time.perf_counter() - patient_started
    return rows


def _init_worker(threads: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, threads))


def _threads(config: RegistrationConfig, workers: int) -> int:
    if config.threads_per_worker > 0:
        return config.threads_per_worker
    cpus = available_cores()
    return max(1, cpus // max(1, workers))


@dataclass
class RegistrationSet:
    """The registrations of a cohort's images into baseline CT space.

    Attributes
    ----------
    table : DataFrame
        One row per registered image (not the baseline CTs), ``TABLE_COLUMNS``.
    config : RegistrationConfig
    """

    table: pd.DataFrame
    config: RegistrationConfig

    def __post_init__(self):
        self._index = {(r.patient_id, r.timepoint, r.modality): i for i, r in enumerate(self.table.itertuples())}

    def row(self, patient_id: str, timepoint: str, modality: str) -> pd.Series | None:
        i = self._index.get((patient_id, timepoint, modality))
        return None if i is None else self.table.iloc[i]

    def transform_path(self, patient_id: str, timepoint: str, modality: str) -> str | None:
        """Composed transform file (baseline CT → image); ``None`` for a baseline CT."""
        if (timepoint, modality) == BASE:
            return None
        row = self.row(patient_id, timepoint, modality)
        if row is None:
            raise KeyError(f"patient {patient_id}: {timepoint}/{modality} was not registered")
        return str(row.transform_path)

    def excluded(self, patient_id: str, timepoint: str, modality: str) -> bool:
        """Whether this image is dropped from the patches (flagged and ``exclude_flagged``)."""
        row = self.row(patient_id, timepoint, modality)
        return bool(self.config.exclude_flagged and row is not None and row.flagged)

    def content_hashes(self) -> list[str]:
        """``patient/timepoint/modality:sha256`` of every composed transform, sorted (cache keys)."""
        return sorted(f"{r.patient_id}/{r.timepoint}/{r.modality}:{r.transform_sha256}"
                      for r in self.table.itertuples())

    def summary(self) -> dict:
        """Counts and figures for logs and tracking (plain numbers)."""
        t = self.table
        flagged = t[t["flagged"]] if len(t) else t
        fresh = t[~t["cached"]] if len(t) else t

        def median_metric(modality: str) -> float:
            values = t.loc[t.modality == modality, "metric"]
            return float(values.median()) if len(values) else float("nan")

        return {
            "n_images": int(len(t)),
            "n_flagged": int(len(flagged)),
            "n_excluded": int(len(flagged)) if self.config.exclude_flagged else 0,
            "n_cached": int(t["cached"].sum()) if len(t) else 0,
            "n_patients": int(t["patient_id"].nunique()) if len(t) else 0,
            "metric_median_ct": median_metric("ct"),
            "metric_median_adc": median_metric("adc"),
            "seconds_per_pair_median": float(fresh["seconds"].median()) if len(fresh) else 0.0,
        }

    def summary_text(self) -> str:
        s = self.summary()
        lines = [f"registration: {s['n_images']} images of {s['n_patients']} patients into baseline CT space "
                 f"({s['n_cached']} from cache), {s['n_flagged']} flagged, {s['n_excluded']} excluded"
                 + ("" if self.config.exclude_flagged else " (exclude_flagged is false: flagged images are kept)")]
        for r in self.table[self.table["flagged"]].itertuples():
            lines.append(f"  flagged: patient {r.patient_id}, {r.timepoint}/{r.modality}: {r.reasons}")
        return "\n".join(lines)


def register_cohort(cohort, config: RegistrationConfig, cache_dir: str | os.PathLike, *,
                    channels: list[tuple[str, str]] | None = None, patients: list[str] | None = None,
                    workers: int | None = None, progress: bool = True, log=print) -> RegistrationSet:
    """Register the images of ``cohort`` needed for ``channels`` ((timepoint, modality); default
    every one) into each patient's baseline CT space, in a process pool of ``workers``
    (default ``config.workers``) patients at a time. Cached results are reused."""
    if channels is None:
        channels = [(t, m) for t in cohort.timepoints for m in cohort.modalities]
    channels = list(channels)
    digests = cohort_file_digests(cohort.root)
    lesions = cohort.lesions
    jobs = []
    ids = sorted(cohort.patients["patient_id"]) if patients is None else list(patients)
    for pid in ids:
        images = {}
        for r in cohort.images[cohort.images["patient_id"] == pid].itertuples():
            path = cohort.root / r.path
            sha = digests.get(str(Path(r.path)))
            if sha is None:  # a DICOM folder: its files' digests
                sha = file_sha256(path) if path.is_file() else _dir_hash(digests, r.path)
            images[(r.timepoint, r.modality)] = (str(path), sha)
        wanted = [c for c in channels if c in images and c != BASE]
        if not wanted:
            continue
        pl = lesions[lesions["patient_id"] == pid]
        centres = [tuple(map(float, c)) for c in pl[["x_mm", "y_mm", "z_mm"]].to_numpy(float)]
        jobs.append(PatientJob(pid, images, wanted, centres, config, str(cache_dir)))
    workers = pool_size(workers or config.workers, len(jobs))
    threads = _threads(config, workers)
    started = time.perf_counter()
    # With one worker the initializer runs in this process: restore its thread count afterwards.
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        per_patient = parallel_map(register_patient, jobs, workers=workers, desc="registration", unit="patient",
                                   progress=progress, initializer=_init_worker, initargs=(threads,))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
    rows = [row for patient_rows in per_patient for row in patient_rows]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values(["patient_id", "timepoint", "modality"], kind="stable").reset_index(drop=True)
    table["flagged"] = table["flagged"].astype(bool)
    table["cached"] = table["cached"].astype(bool)
    result = RegistrationSet(table, config)
    log(result.summary_text().splitlines()[0] + f" in {time.perf_counter() - started:.0f} s")
    return result


def _dir_hash(digests: dict[str, str], rel: str) -> str:
    """Content hash of an image stored as a folder (DICOM series): its files' digests."""
    prefix = str(Path(rel)) + os.sep
    return payload_digest(sorted((k, v) for k, v in digests.items() if k.startswith(prefix)))
