"""AUC statistics for lesions clustered within patients.

Lesions of one patient are not independent (docs/design.md §1), so variances treat
the patient as the unit of independence:

* :func:`clustered_auc`, :func:`clustered_auc_covariance` and
  :func:`clustered_auc_difference` use the nonparametric estimator of
  Obuchowski (1997, Biometrics 53:567–578), which extends DeLong's placement
  values to clusters.
* :func:`cluster_bootstrap_ci` resamples whole clusters (patients) with
  replacement for any metric; :func:`cluster_bootstrap_auc` is its vectorised
  fast path for the AUC.

Obuchowski's estimator, and its exact equality with DeLong's variance when every
cluster holds one lesion, is written out in ``_obuchowski``; the bootstrap lives in
``_cluster_bootstrap``. Every public name is importable from this module.
"""

# BOOTSTRAP_METHODS, _draw_cluster_counts and _finish are shared with dlm_ml.stats.intervals.
from ._cluster_bootstrap import BootstrapCI, cluster_bootstrap_auc, cluster_bootstrap_ci
from ._obuchowski import (
    ClusteredAUC,
    ClusteredAUCDifference,
    clustered_auc,
    clustered_auc_covariance,
    clustered_auc_difference,
)

__all__ = [
    "ClusteredAUC",
    "ClusteredAUCDifference",
    "BootstrapCI",
    "clustered_auc",
    "clustered_auc_covariance",
    "clustered_auc_difference",
    "cluster_bootstrap_ci",
    "cluster_bootstrap_auc",
]
