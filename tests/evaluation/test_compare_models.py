"""Paired tests between models on the lesions both predicted, and the models beside the readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml import stats
from dlm_ml.evaluation.compare import (
    RunSummary,
    comparison_table,
    holm,
    models_vs_readers,
    pairwise_table,
    resolve_pairs,
    run_labels,
    shared_lesions,
)
from tests.evaluation.helpers import make_tables

KEY = ["patient_id", "lesion_id"]


@pytest.fixture(scope="module")
def two_models():
    """Model a; model b = a with noise, one lesion a never predicted and without one of a's lesions."""
    pred, readings, _ = make_tables(n_patients=40)
    rng = np.random.default_rng(5)
    b = pred.assign(prob_pcr=np.clip(pred.prob_pcr + rng.normal(0, 0.25, len(pred)), 0, 1))
    a = pred.drop(index=[0]).reset_index(drop=True)              # lesion 0 predicted by b only
    b = b.drop(index=[len(pred) - 1]).reset_index(drop=True)     # the last lesion predicted by a only
    return pred, a, b, readings


def test_pairwise_equals_direct_stats_on_shared_lesions(two_models):
    pred, a, b, _ = two_models
    table = pairwise_table({"a": a, "b": b}, {"a": "c1", "b": "c1"}, [("a", "b")], run_ids={"a": "r1", "b": "r2"})
    row = table.iloc[0]
    shared = pred.iloc[1:-1][KEY].merge(a, on=KEY).merge(b[KEY + ["prob_pcr"]], on=KEY, suffixes=("_a", "_b"))
    truth, pa, pb = shared.pcr.to_numpy(), shared.prob_pcr_a.to_numpy(), shared.prob_pcr_b.to_numpy()
    clustered = stats.clustered_auc_difference(truth, pa, pb, shared.patient_id.to_numpy())
    delong = stats.delong_test(truth, pa, pb)
    assert (row.difference, row.obuchowski_p, row.obuchowski_se) == \
        pytest.approx((clustered.diff, clustered.p_value, clustered.se), rel=1e-12)
    assert (row.ci_low, row.ci_high) == pytest.approx((clustered.ci_low, clustered.ci_high), rel=1e-12)
    assert row.delong_p == pytest.approx(delong.p_value, rel=1e-12)
    assert (row.n_lesions, row.lesions_only_a, row.lesions_only_b) == (len(pred) - 2, 1, 1)
    assert row.n_patients == shared.patient_id.nunique() and (row.run_a, row.run_b) == ("r1", "r2")


def test_pcr_disagreement_refused_naming_the_lesion(two_models):
    _, a, b, _ = two_models
    flipped = b.copy()
    flipped.loc[3, "pcr"] = 1 - flipped.loc[3, "pcr"]
    with pytest.raises(ValueError, match=rf"patient {flipped.patient_id[3]}, lesion {flipped.lesion_id[3]}"):
        shared_lesions(a, flipped, "a", "b")


def test_different_cohorts_refused(two_models):
    _, a, b, _ = two_models
    with pytest.raises(ValueError, match="different cohorts"):
        pairwise_table({"a": a, "b": b}, {"a": "c1", "b": "c2"}, [("a", "b")])


def test_holm():
    assert holm([0.01, 0.04, 0.03, np.nan]).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == pytest.approx(0.01)


def test_models_vs_readers_equals_direct_mrmc_per_model(two_models):
    pred, a, b, readings = two_models
    table, info = models_vs_readers({"a": a, "b": b}, readings)
    common = pred.iloc[1:-1].reset_index(drop=True)  # predicted by both, read by all three readers
    assert info["n_lesions"] == len(common) and info["lesions_left_out"] == {"a": 1, "b": 1}
    cases = common.assign(case=np.arange(len(common)))
    long = cases[KEY + ["case"]].merge(readings, on=KEY).rename(columns={"reader_id": "reader", "score": "rating"})
    for label, frame in (("a", a), ("b", b)):
        scores = cases[KEY + ["case", "pcr"]].merge(frame[KEY + ["prob_pcr"]], on=KEY)
        direct = stats.model_vs_readers(scores, long[["reader", "case", "rating"]], truth="pcr", prob="prob_pcr",
                                        cluster="patient_id", model_label=label)
        row = table.set_index("model").loc[label]
        diff = direct.rrrc.differences.iloc[0]
        assert (row.difference, row.p_value) == pytest.approx((diff.estimate, diff.p_value), rel=1e-10)
    assert table.p_holm.tolist() == pytest.approx(holm(table.p_value).tolist())


def _summary(run_id, name, cohort="c" * 64):
    records = [{"method_id": "model", "role": "model", "reader_id": None, "metric": "auc", "estimate": 0.8,
                "ci_low": 0.7, "ci_high": 0.9}]
    return RunSummary(run_id, f"run {run_id}", {}, cohort, records, model_name=name)


def test_rows_named_by_model_and_pairs_resolved():
    runs = [_summary("aaaaaaaa1", "longitudinal"), _summary("bbbbbbbb2", "longitudinal"),
            _summary("cccccccc3", "clinical_logistic"), _summary("dddddddd4", "")]
    labels = run_labels(runs)
    assert labels == {"aaaaaaaa1": "longitudinal (aaaaaaaa)", "bbbbbbbb2": "longitudinal (bbbbbbbb)",
                      "cccccccc3": "clinical_logistic", "dddddddd4": "run dddddddd4"}
    assert list(comparison_table(runs, []).model) == list(labels.values())
    assert resolve_pairs("clinical_logistic:bbbbbbbb", runs) == [("clinical_logistic", "longitudinal (bbbbbbbb)")]
    with pytest.raises(ValueError, match="'longitudinal' names several runs"):
        resolve_pairs("longitudinal:clinical_logistic", runs)
    with pytest.raises(ValueError, match="not of the form A:B"):
        resolve_pairs("clinical_logistic", runs)
    assert isinstance(comparison_table(runs, []), pd.DataFrame)
