"""IBSI radiomics and delta-radiomics features per lesion, cached by content.

Public API::

    config = RadiomicsConfig()                       # or hydra.utils.instantiate(cfg.data.radiomics)
    table = radiomics_features(cohort, cohort.labelled_lesions(), config, cache_dir, registration=regs)
    table.features                                   # patient_id, lesion_id, then feature columns
    table.features[roi_mean_column("presurgery", "adc")]

Modules: ``config`` (settings and the IBSI choices), ``names`` (column naming), ``roi``
(regions on the crop grid), ``mirp_adapter`` (mirp on one region), ``cache`` (key, file),
``extract`` (the pool and the table).
"""

from dlm_ml.data.radiomics.cache import RADIOMICS_ALGORITHM_VERSION, radiomics_cache_key
from dlm_ml.data.radiomics.config import DEFAULT_FAMILIES, DEFAULT_INTENSITY, RadiomicsConfig
from dlm_ml.data.radiomics.extract import RadiomicsError, RadiomicsTable, feature_columns, radiomics_features
from dlm_ml.data.radiomics.names import delta_column, image_column, roi_mean_column, shape_column

__all__ = ["DEFAULT_FAMILIES", "DEFAULT_INTENSITY", "RADIOMICS_ALGORITHM_VERSION", "RadiomicsConfig",
           "RadiomicsError", "RadiomicsTable", "delta_column", "feature_columns", "image_column",
           "radiomics_cache_key", "radiomics_features", "roi_mean_column", "shape_column"]
