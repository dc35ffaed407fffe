"""Column names of the radiomics table: the one place for the naming convention.

A column is ``{source}_{region}__{feature}``; the double underscore separates where a value
comes from and what it is.

* ``source``: ``{timepoint}_{modality}`` for one image (``presurgery_adc``); ``delta`` for
  presurgery − baseline; ``delta_{later}_from_{earlier}`` for any other configured pair;
  ``shape`` for the ROI's morphology (the same at every timepoint, computed once).
* ``region``: ``roi`` (the lesion: its mask, else a sphere of its baseline diameter) or
  ``ring`` (the peritumoral ring around it).
* ``feature``: ``mean`` (the ROI mean intensity in source units, computed with numpy over the
  region, no mirp, no rounding), or mirp's feature name (e.g. ``stat_mean``,
  ``cm_contrast_d1_3d_v_mrg_fbs_w25.0``: family, feature, then mirp's settings tag).

The first two columns are ``patient_id``, ``lesion_id``.
"""

from __future__ import annotations

from dlm_ml.data.cohort import schema

SEPARATOR = "__"
SHAPE_SOURCE = "shape"
#: The numpy ROI mean: present for every (timepoint, modality, region), whatever the families.
MEAN_FEATURE = "mean"


def image_source(timepoint: str, modality: str) -> str:
    return f"{timepoint}_{modality}"


def delta_source(earlier: str, later: str) -> str:
    """``delta`` for the decision's change (baseline → presurgery), else ``delta_{later}_from_{earlier}``."""
    if (earlier, later) == (schema.REFERENCE_TIMEPOINT, schema.DECISION_TIMEPOINT):
        return "delta"
    return f"delta_{later}_from_{earlier}"


def feature_column(source: str, region: str, feature: str) -> str:
    return f"{source}_{region}{SEPARATOR}{feature}"


def image_column(timepoint: str, modality: str, region: str, feature: str) -> str:
    """``{timepoint}_{modality}_{region}__{feature}``."""
    return feature_column(image_source(timepoint, modality), region, feature)


def delta_column(modality: str, region: str, feature: str, earlier: str = schema.REFERENCE_TIMEPOINT,
                 later: str = schema.DECISION_TIMEPOINT) -> str:
    """``delta_{modality}_{region}__{feature}`` (later − earlier) for the default pair."""
    return feature_column(f"{delta_source(earlier, later)}_{modality}", region, feature)


def roi_mean_column(timepoint: str, modality: str) -> str:
    """The ROI mean intensity of one image (source units): what a rule such as "ADC change"
    (``presurgery_adc`` / ``baseline_adc`` − 1) reads."""
    return image_column(timepoint, modality, "roi", MEAN_FEATURE)


def shape_column(feature: str) -> str:
    return feature_column(SHAPE_SOURCE, "roi", feature)


def split_column(column: str) -> tuple[str, str]:
    """``(source_region, feature)`` of a feature column."""
    head, sep, feature = column.partition(SEPARATOR)
    if not sep:
        raise ValueError(f"{column!r} is not a radiomics feature column (no {SEPARATOR!r})")
    return head, feature
