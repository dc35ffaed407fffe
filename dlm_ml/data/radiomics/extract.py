"""Radiomics and delta-radiomics features per lesion: :func:`radiomics_features`.

For every lesion: its regions (:mod:`dlm_ml.data.radiomics.roi`), then for every configured
(timepoint, modality) one resampling of the raw image (HU, µm²/s; not the normalised patches)
through its registration into baseline CT space onto the lesion's crop grid, then per region
the numpy mean and mirp's features; then deltas (later − earlier) per modality and region.
Column names: :mod:`dlm_ml.data.radiomics.names`. Two passes over patients in a process pool:
regions first, so every empty ROI of the cohort is reported at once before any feature is
computed; then the features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dlm_ml.data.cohort import Cohort, schema
from dlm_ml.data.patches import resample_patch
from dlm_ml.data.patches.extract import open_channel
from dlm_ml.data.radiomics import names
from dlm_ml.data.radiomics.cache import (
    RADIOMICS_ALGORITHM_VERSION,
    cache_path,
    radiomics_cache_key,
    read_cached,
    write_cached,
)
from dlm_ml.data.radiomics.config import RadiomicsConfig
from dlm_ml.data.radiomics.mirp_adapter import (
    MIRP_VERSION,
    intensity_feature_names,
    intensity_features,
    morphology_feature_names,
    morphology_features,
)
from dlm_ml.data.radiomics.roi import patient_regions
from dlm_ml.utils.parallel import parallel_map

COVERAGE_COLUMNS = ["patient_id", "lesion_id", "timepoint", "modality", "region", "coverage", "used"]


class RadiomicsError(ValueError):
    """Lesions whose features cannot be computed; one line per problem, naming patient and lesion."""


@dataclass
class RadiomicsTable:
    """The radiomics features of the requested lesions.

    Attributes
    ----------
    features : DataFrame
        One row per requested lesion, in their order: ``patient_id``, ``lesion_id``, then float
        columns (:func:`feature_columns`); NaN where an image is missing or does not cover a region.
    cache_key : str
    seconds_per_lesion, seconds_per_image : float
        Wall time of the extraction that computed the table (its manifest's on a cache hit),
        per lesion and per (lesion, present image).
    from_cache : bool
    coverage : DataFrame
        ``COVERAGE_COLUMNS``: every (lesion, image, region) whose region an image covers only
        partly; ``used`` is False where that left the features NaN (coverage < ``min_coverage``).
    """

    features: pd.DataFrame
    cache_key: str
    seconds_per_lesion: float
    seconds_per_image: float
    from_cache: bool
    coverage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COVERAGE_COLUMNS))

    def __len__(self) -> int:
        return len(self.features)


def _intensity_names(config: RadiomicsConfig, modality: str) -> tuple[str, ...]:
    if not config.families:
        return (names.MEAN_FEATURE,)
    return (names.MEAN_FEATURE,) + intensity_feature_names(tuple(sorted(config.intensity[modality].items())),
                                                           config.families)


def feature_columns(config: RadiomicsConfig) -> list[str]:
    """Every feature column for ``config``, in table order: per (timepoint, modality) and region
    the mean and mirp's features; the ROI's morphology (``morphology``); the delta columns."""
    columns = [names.image_column(t, m, r, f) for t, m in config.images for r in config.regions
               for f in _intensity_names(config, m)]
    if config.morphology:
        columns += [names.shape_column(f) for f in morphology_feature_names()]
    return columns + [c for _, _, c in _delta_triples(config)]


def _delta_triples(config: RadiomicsConfig) -> list[tuple[str, str, str]]:
    """(earlier column, later column, delta column) of every delta feature."""
    out = []
    for earlier, later in config.delta_pairs:
        for m in config.modalities:
            for r in config.regions:
                for f in _intensity_names(config, m):
                    out.append((names.image_column(earlier, m, r, f), names.image_column(later, m, r, f),
                                names.delta_column(m, r, f, earlier, later)))
    return out


def _patient_features(args) -> tuple[list[int], list[dict], list[dict], list[str], int]:
    """Worker: the features of one patient's lesions. ``args`` = (row indices, regions, image
    paths and transform paths keyed ``timepoint/modality``, config dict). Returns the rows, one
    ``{column: value}`` per lesion, coverage notes, problems and the (lesion, image) count."""
    rows, regions, image_paths, transform_paths, config_dict = args
    config = RadiomicsConfig(**config_dict)
    values: list[dict] = [{} for _ in rows]
    notes, problems, n_images = [], [], 0
    for timepoint, modality in config.images:
        opened = open_channel(image_paths, transform_paths, timepoint, modality)
        if opened is None:
            continue
        image, transform = opened
        path = image_paths[f"{timepoint}/{modality}"]  # named in errors
        intensity = config.intensity[modality]
        for out, lesion in zip(values, regions):
            n_images += 1
            # NaN beyond the image's field of view marks the voxels it does not cover.
            crop = sitk.GetArrayFromImage(resample_patch(image, lesion.centre_mm, lesion.size_voxels,
                                                         config.spacing_mm, float("nan"), transform))
            inside = np.isfinite(crop)
            filled = np.where(inside, crop, np.float32(intensity["bin_lower_bound"])).astype(np.float32)
            for region_name, region in lesion.regions.items():
                covered = region & inside
                coverage = float(covered.sum()) / max(int(region.sum()), 1)
                used = coverage >= config.min_coverage and covered.any()
                if coverage < 1.0:
                    notes.append({"patient_id": lesion.patient_id, "lesion_id": lesion.lesion_id,
                                  "timepoint": timepoint, "modality": modality, "region": region_name,
                                  "coverage": coverage, "used": bool(used)})
                if not used:
                    continue
                out[names.image_column(timepoint, modality, region_name, names.MEAN_FEATURE)] = float(
                    crop[covered].astype(np.float64).mean())
                if not config.families:
                    continue
                try:
                    feats = intensity_features(filled, covered, config.spacing_mm, intensity, config.families)
                except Exception as err:  # noqa: BLE001 - reported with patient, lesion and image
                    problems.append(f"patient {lesion.patient_id}, lesion {lesion.lesion_id}, image "
                                    f"{timepoint}/{modality} ({path}), region {region_name}: mirp failed: {err}")
                    continue
                out.update({names.image_column(timepoint, modality, region_name, k): v for k, v in feats.items()})
    if config.morphology:
        for out, lesion in zip(values, regions):
            try:
                shape = morphology_features(lesion.regions["roi"], config.spacing_mm)
            except Exception as err:  # noqa: BLE001 - reported with patient and lesion
                problems.append(f"patient {lesion.patient_id}, lesion {lesion.lesion_id}, ROI morphology: "
                                f"mirp failed: {err}")
                continue
            out.update({names.shape_column(k): v for k, v in shape.items()})
    return rows, values, notes, problems, n_images


def _check_lesions(lesions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in schema.REQUIRED_COLUMNS[schema.LESIONS_CSV] if c not in lesions.columns]
    if missing:
        raise RadiomicsError(f"lesions table lacks column(s) {missing}")
    lesions = lesions.reset_index(drop=True).copy()
    lesions["patient_id"], lesions["lesion_id"] = lesions.patient_id.astype(str), lesions.lesion_id.astype(str)
    dup = lesions[lesions.duplicated(list(schema.LESION_KEY), keep=False)]
    if len(dup):
        pairs = ", ".join(sorted({f"patient {p}, lesion {q}" for p, q in zip(dup.patient_id, dup.lesion_id)}))
        raise RadiomicsError(f"lesions table lists a lesion more than once: {pairs}")
    return lesions


def _image_sources(cohort: Cohort, patient_id: str, config: RadiomicsConfig, registration):
    """Image paths and transform paths of one patient, keyed ``timepoint/modality``; images of a
    flagged registration (``exclude_flagged``) are left out as missing."""
    image_paths, transform_paths, excluded = {}, {}, []
    for t, m in config.images:
        path = cohort.image_path(patient_id, t, m)
        if path is None:
            continue
        if registration is not None:
            if registration.excluded(patient_id, t, m):
                excluded.append(f"{patient_id} {t}/{m}")
                continue
            try:
                tfm = registration.transform_path(patient_id, t, m)
            except KeyError as err:
                raise RadiomicsError(f"patient {patient_id}: image {t}/{m} is not in the registration set "
                                     "given; register the images of config.images first") from err
            if tfm is not None:
                transform_paths[f"{t}/{m}"] = tfm
        image_paths[f"{t}/{m}"] = str(path)
    return image_paths, transform_paths, excluded


def radiomics_features(cohort: Cohort, lesions: pd.DataFrame, config: RadiomicsConfig, cache_dir: str | Path, *,
                       registration=None, workers: int = 1, progress: bool = True, log=print) -> RadiomicsTable:
    """The radiomics table of ``lesions`` (a DataFrame with ``patient_id, lesion_id, x_mm, y_mm,
    z_mm, diameter_mm`` and optional ``mask_path``, ``mask_label``, e.g.
    ``cohort.labelled_lesions()``), from the cache when its key matches, else computed over
    ``workers`` processes and cached under ``cache_dir``.

    ``registration``: a :class:`~dlm_ml.data.registration.RegistrationSet` holding the images of
    ``config.images`` (each is sampled through its composed transform into baseline CT space),
    or None to use every image in its own physical space. Nothing is registered here.

    Raises :class:`RadiomicsError` listing every lesion with an empty ROI (before any feature is
    computed), or every mirp failure with patient, lesion and image.
    """
    missing = [m for m in config.modalities if m not in cohort.modalities]
    if missing:
        raise RadiomicsError(f"modality(ies) {missing} not in cohort {cohort.root} ({cohort.modalities})")
    lesions = _check_lesions(lesions)
    key = radiomics_cache_key(cohort, config, lesions, registration=registration)
    path = cache_path(cache_dir, key)
    cached = read_cached(path, lesions)
    if cached is not None:
        table, manifest = cached
        log(f"radiomics cache hit: reusing {path} ({len(table)} lesions, key {key})")
        return RadiomicsTable(table, key, manifest["seconds_per_lesion"], manifest["seconds_per_image"], True,
                              pd.DataFrame(manifest["coverage"], columns=COVERAGE_COLUMNS))
    log(f"radiomics cache miss: computing {len(lesions)} lesions into {path}")
    started = time.perf_counter()

    groups = list(lesions.groupby("patient_id", sort=True))
    region_jobs = [(g.index.tolist(), g.to_dict("records"), str(cohort.root), config.to_dict(),
                    str(p) if (p := cohort.image_path(pid, schema.REFERENCE_TIMEPOINT, schema.REFERENCE_MODALITY))
                    else None) for pid, g in groups]
    region_results = parallel_map(patient_regions, region_jobs, workers=workers, desc="radiomics regions",
                                  unit="patient", progress=progress)
    problems = [p for _, _, found in region_results for p in found]
    if problems:
        raise RadiomicsError(f"{len(problems)} lesion(s) without a usable ROI:\n  " + "\n  ".join(problems))

    jobs, excluded = [], []
    for (pid, _), (rows, regions, _) in zip(groups, region_results):
        image_paths, transform_paths, dropped = _image_sources(cohort, pid, config, registration)
        excluded += dropped
        jobs.append((rows, regions, image_paths, transform_paths, config.to_dict()))
    if excluded:
        log(f"radiomics: {len(excluded)} image(s) of flagged registrations treated as missing: {', '.join(excluded)}")
    results = parallel_map(_patient_features, jobs, workers=workers, desc="radiomics", unit="patient",
                           progress=progress)
    problems = [p for *_, found, _ in results for p in found]
    if problems:
        raise RadiomicsError(f"{len(problems)} feature computation(s) failed:\n  " + "\n  ".join(problems))

    table = _assemble(lesions, config, results)
    notes = pd.DataFrame([n for _, _, found, _, _ in results for n in found], columns=COVERAGE_COLUMNS)
    elapsed = time.perf_counter() - started
    n_images = sum(r[-1] for r in results)
    per_lesion, per_image = elapsed / max(len(lesions), 1), elapsed / max(n_images, 1)
    if len(notes):
        log(f"radiomics: {len(notes)} region(s) only partly inside their image, "
            f"{int((~notes.used).sum())} left NaN (min_coverage {config.min_coverage:g})")
    write_cached(path, table, {"key": key, "algorithm": RADIOMICS_ALGORITHM_VERSION, "mirp": MIRP_VERSION,
                               "config": config.to_dict(), "cohort": str(cohort.root), "n_lesions": len(table),
                               "seconds_per_lesion": per_lesion, "seconds_per_image": per_image,
                               "coverage": notes.to_dict("records")})
    return RadiomicsTable(table, key, per_lesion, per_image, False, notes)


def _assemble(lesions: pd.DataFrame, config: RadiomicsConfig, results) -> pd.DataFrame:
    """One row per lesion in input order; every column of :func:`feature_columns`; deltas."""
    columns = feature_columns(config)
    position = {c: i for i, c in enumerate(columns)}
    values = np.full((len(lesions), len(columns)), np.nan)
    for rows, per_lesion, *_ in results:
        for row, found in zip(rows, per_lesion):
            unknown = [c for c in found if c not in position]
            if unknown:
                raise RadiomicsError(f"patient {lesions.patient_id[row]}, lesion {lesions.lesion_id[row]}: mirp "
                                     f"returned feature(s) not in the table's columns: {unknown[:5]}")
            for c, v in found.items():
                values[row, position[c]] = v
    for earlier, later, delta in _delta_triples(config):
        values[:, position[delta]] = values[:, position[later]] - values[:, position[earlier]]
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "lesion_id", lesions.lesion_id.to_numpy(object))
    table.insert(0, "patient_id", lesions.patient_id.to_numpy(object))
    return table
