"""What a dlm-train run trains on: lesion patches for a network, or tabular lesion features
(clinical covariates, the sites' measurements, radiomics) for a model of
:mod:`dlm_ml.models.baselines`. Both give the same lesions, in the same order: every labelled
lesion of the cohort, sorted by (patient, lesion)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig

from dlm_ml.data.cohort import schema
from dlm_ml.data.covariates import covariate_table, lesion_covariates
from dlm_ml.data.measurements import ADC_CHANGE, adc_change, lesion_measurements
from dlm_ml.data.patches import build_patches
from dlm_ml.data.radiomics import radiomics_features
from dlm_ml.data.registration import registration_config_from_cfg
from dlm_ml.data.registration.cohort import register_cohort
from dlm_ml.models.baselines import COVARIATES, MEASUREMENTS, RADIOMICS, ROI_MEANS
from dlm_ml.utils.hashing import payload_digest
from dlm_ml.utils.timing import stage

log = logging.getLogger("dlm_ml.train")


@dataclass
class TrainingInputs:
    """``lesions``: ``patient_id, lesion_id, pcr``. A network run has ``patches`` (and
    ``covariates``); a tabular run has ``features`` (row-aligned with ``lesions``).
    ``cache_key`` identifies the inputs (patch or feature cache key); ``registration`` and
    ``excluded_images`` as :class:`~dlm_ml.data.patches.PatchSet` holds them."""

    lesions: pd.DataFrame
    cache_key: str
    patches: Any = None
    covariates: Any = None
    features: pd.DataFrame | None = None
    registration: Any = None
    excluded_images: pd.DataFrame | None = None
    #: seconds per lesion of the extraction that computed the radiomics (None: no radiomics)
    radiomics_seconds_per_lesion: float | None = None


def is_tabular(cfg: DictConfig) -> bool:
    """A model config with an ``estimator`` (not a ``net``) is a tabular model."""
    return cfg.model.get("estimator") is not None


def training_inputs(cfg: DictConfig, cohort) -> TrainingInputs:
    if is_tabular(cfg):
        return _tabular_inputs(cfg, cohort)
    patch_config = hydra.utils.instantiate(cfg.data.patches)  # refuses post-decision timepoints
    covariate_config = hydra.utils.instantiate(cfg.data.covariates)
    covariate_table(cohort, cohort.labelled_lesions(), covariate_config)  # a wrong column stops us before imaging
    patches = build_patches(cohort, patch_config, cfg.paths.cache_dir, num_workers=int(cfg.data.preprocess_workers),
                            log=log.info, registration=registration_config_from_cfg(cfg.data))
    return TrainingInputs(patches.lesions, patches.cache_key, patches=patches,
                          covariates=lesion_covariates(cohort, patches.lesions, covariate_config),
                          registration=patches.registration, excluded_images=patches.excluded_images)


def labelled_lesions(cohort) -> pd.DataFrame:
    """Every lesion with an outcome, sorted by (patient, lesion): the lesions a patch set holds."""
    lesions = cohort.labelled_lesions().sort_values(list(schema.LESION_KEY), kind="stable")
    return lesions.reset_index(drop=True)


def _tabular_inputs(cfg: DictConfig, cohort) -> TrainingInputs:
    template = hydra.utils.instantiate(cfg.model.estimator)  # validates the model's settings up front
    lesions = labelled_lesions(cohort)
    key = list(schema.LESION_KEY)
    features = lesions[key].copy()
    parts: dict[str, str] = {}
    if COVARIATES in template.inputs:
        table = covariate_table(cohort, lesions, template.covariates)
        features = features.merge(table, on=key, how="left", validate="1:1")
    if MEASUREMENTS in template.inputs:
        table = lesion_measurements(cohort.lesions, lesions)
        features = features.merge(table, on=key, how="left", validate="1:1", suffixes=("", "_measured"))
    registration, seconds = None, None
    if RADIOMICS in template.inputs or ROI_MEANS in template.inputs:
        radiomics = _radiomics(cfg, cohort, lesions, means_only=RADIOMICS not in template.inputs)
        registration, seconds = radiomics.registration, radiomics.table.seconds_per_lesion
        table = radiomics.table.features
        features = features.merge(table.assign(**{ADC_CHANGE: adc_change(table)}), on=key, how="left",
                                  validate="1:1")
        parts["radiomics"] = radiomics.table.cache_key
    parts["features"] = payload_digest(pd.util.hash_pandas_object(features, index=False).tolist())
    return TrainingInputs(lesions[key + ["pcr"]], payload_digest(parts), features=features,
                          registration=registration, radiomics_seconds_per_lesion=seconds)


@dataclass
class _Radiomics:
    table: Any
    registration: Any


def _radiomics(cfg: DictConfig, cohort, lesions: pd.DataFrame, means_only: bool) -> _Radiomics:
    """Radiomics features (``data.radiomics``) of the registered images; ``means_only``: the ROI
    means alone (no mirp families, no ring), for the rules."""
    config = hydra.utils.instantiate(cfg.data.radiomics)  # refuses post-decision timepoints
    if means_only:
        config = replace(config, families=(), ring_mm=0.0, morphology=False)
    registration = None
    registration_config = registration_config_from_cfg(cfg.data)
    if registration_config is not None and registration_config.enabled:
        channels = [(t, m) for t in config.timepoints for m in config.modalities]
        with stage("registration"):
            registration = register_cohort(cohort, registration_config, cfg.paths.cache_dir, channels=channels,
                                           patients=sorted(lesions.patient_id.unique()), log=log.info)
    with stage("radiomics"):
        table = radiomics_features(cohort, lesions, config, cfg.paths.cache_dir, registration=registration,
                                   workers=int(cfg.data.preprocess_workers), log=log.info)
    log.info("radiomics: %d columns per lesion%s", table.features.shape[1] - 2,
             "" if table.from_cache else f", {table.seconds_per_lesion:.2f} s per lesion")
    return _Radiomics(table, registration)
