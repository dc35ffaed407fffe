"""AUC statistics for lesions clustered within patients.

Lesions of one patient are not independent (docs/design.md §1), so variances treat
the patient as the unit of independence:

* :func:`clustered_auc`, :func:`clustered_auc_covariance` and
  :func:`clustered_auc_difference` use the nonparametric estimator of
  Obuchowski (1997, Biometrics 53:567–578), which extends DeLong's placement
  values to clusters. The AUC's interval (:func:`clustered_auc_ci`) is chosen by
  ``ci_method`` (:data:`CLUSTERED_AUC_CI_METHODS`): by default logit-scale with a t
  quantile on patients − 1 df, which keeps nominal coverage with few patients;
  "normal" is Obuchowski's Wald interval.
* :func:`cluster_bootstrap_ci` resamples whole clusters (patients) with
  replacement for any metric; :func:`cluster_bootstrap_auc` is its vectorised
  fast path for the AUC.

Obuchowski's estimator, and its exact equality with DeLong's variance when every
cluster holds one lesion, is written out in ``_obuchowski``; the bootstrap lives in
``_cluster_bootstrap``. Every public name is importable from this module.
"""

# BOOTSTRAP_METHODS, _draw_cluster_counts and _finish are shared with dlm_ml.stats.intervals.
from ._cluster_bootstrap import (
    BootstrapCI,
    ClusterResamples,
    cluster_bootstrap_auc,
    cluster_bootstrap_ci,
    draw_cluster_resamples,
)
from ._obuchowski import (
    CLUSTERED_AUC_CI_METHODS,
    DEFAULT_CLUSTERED_AUC_CI,
    ClusteredAUC,
    ClusteredAUCDifference,
    clustered_auc,
    clustered_auc_ci,
    clustered_auc_covariance,
    clustered_auc_difference,
    describe_clustered_auc_ci,
)

__all__ = [
    "ClusteredAUC",
    "ClusteredAUCDifference",
    "BootstrapCI",
    "ClusterResamples",
    "draw_cluster_resamples",
    "CLUSTERED_AUC_CI_METHODS",
    "DEFAULT_CLUSTERED_AUC_CI",
    "clustered_auc",
    "clustered_auc_ci",
    "describe_clustered_auc_ci",
    "clustered_auc_covariance",
    "clustered_auc_difference",
    "cluster_bootstrap_ci",
    "cluster_bootstrap_auc",
]
