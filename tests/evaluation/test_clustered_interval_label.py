"""The report says which interval its Obuchowski (clustered) AUC columns show."""

from __future__ import annotations

import numpy as np

from dlm_ml import stats
from dlm_ml.evaluation.document import Document
from dlm_ml.evaluation.render import clustered_interval_text, render_discrimination, render_folds
from dlm_ml.evaluation.sections.common import attempt


def _row(ci_method: str | None = None) -> dict:
    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(20), 2)
    truth = rng.integers(0, 2, patients.size)
    prob = 1 / (1 + np.exp(-(truth + rng.normal(size=patients.size))))
    kwargs = {} if ci_method is None else {"ci_method": ci_method}
    ob = attempt(stats.clustered_auc, truth, prob, patients, **kwargs)
    boot = attempt(stats.cluster_bootstrap_auc, truth, prob, patients, n_boot=50, seed=0)
    return {"method": "model", "n_lesions": 40, "n_patients": 20, "n_pcr": int(truth.sum()),
            "n_viable": int((truth == 0).sum()), "delong": attempt(stats.delong_auc_ci, truth, prob),
            "obuchowski": ob, "bootstrap": boot}


def test_discrimination_paragraph_names_the_default_interval():
    row = _row()
    assert row["obuchowski"]["ci_method"] == stats.DEFAULT_CLUSTERED_AUC_CI
    doc = Document()
    render_discrimination(doc, [row], "95%", None)
    expected = stats.describe_clustered_auc_ci(stats.DEFAULT_CLUSTERED_AUC_CI)
    assert f"Obuchowski CI: {expected}." in doc.markdown()


def test_interval_text_of_older_results_and_mixed_methods():
    old = {k: v for k, v in _row("normal")["obuchowski"].items() if k not in ("ci_method", "ci_df")}
    assert clustered_interval_text([old]) == "Wald, normal quantile"
    both = clustered_interval_text([_row()["obuchowski"], _row("normal")["obuchowski"]])
    assert both == "logit-scale Wald, t quantile with patients - 1 df; Wald, normal quantile"
    assert clustered_interval_text([{"available": False, "reason": "one class"}]) == "none available"


def test_fold_section_names_the_interval():
    fold = {**_row(), "label": "fold 0", "available": True, "brier": 0.2,
            "recalibration": {"available": False, "reason": "not fitted"}}
    doc = Document()
    render_folds(doc, {"folds": [fold], "pooled": None, "spread": {"n_folds": 1}}, "95%")
    expected = stats.describe_clustered_auc_ci(stats.DEFAULT_CLUSTERED_AUC_CI)
    assert f"Obuchowski (patients as clusters; {expected}), 95%" in doc.markdown()
