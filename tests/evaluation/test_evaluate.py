"""evaluate(): one bootstrap per evaluation, structured metric records, the header, the MRMC note."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlm_ml import stats
from dlm_ml.evaluation.evaluate import evaluate
from dlm_ml.evaluation.records import RECORD_FIELDS
from tests.evaluation.helpers import cohort_of, make_tables, settings

HEADER = {"run id": "abc123", "run name": "demo", "model": "small_cnn", "cohort fingerprint": "f" * 64,
          "git commit": "0123abc", "date": "2025-01-01", "validation design": "5-fold, patient-grouped"}




@pytest.fixture(scope="module")
def result(tmp_path_factory):
    pred, readings, thresholds = make_tables(n_patients=40)
    out = tmp_path_factory.mktemp("evaluation")
    evaluation = evaluate(pred, cohort_of(pred, readings), thresholds, out, settings=settings(), header=HEADER)
    return pred, readings, thresholds, out, evaluation


def test_records_are_structured_and_match_the_table(result):
    pred, readings, thresholds, out, ev = result
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["records"] == ev.records and payload["header"] == HEADER and payload["counts"] == ev.counts
    assert all(tuple(r) == RECORD_FIELDS for r in ev.records)
    ids = [r["method_id"] for r in ev.records]
    assert list(dict.fromkeys(ids)) == ["model", "reader:R1", "model_at:R1", "reader:R2", "model_at:R2",
                                        "reader:R3", "model_at:R3"]
    by = {(r["method_id"], r["metric"]): r for r in ev.records}
    assert {m for (mid, m) in by if mid == "model_at:R2"} == {"sensitivity", "specificity", "ppv", "npv"}
    model_at = by[("model_at:R2", "ppv")]
    assert (model_at["role"], model_at["reader_id"], model_at["ci_method"]) == \
        ("model_at_reader", "R2", "patient_bootstrap_percentile")
    assert model_at["estimate"] == pytest.approx(model_at["numerator"] / model_at["denominator"])
    auc = by[("model", "auc")]
    direct = stats.cluster_bootstrap_auc(pred.pcr, pred.prob_pcr, pred.patient_id, n_boot=200, seed=3)
    assert (auc["estimate"], auc["ci_low"], auc["ci_high"]) == pytest.approx((direct.estimate, direct.ci_low,
                                                                              direct.ci_high))
    assert (auc["n_lesions"], auc["n_patients"], auc["role"], auc["reader_id"]) == (len(pred), 40, "model", None)
    row = ev.table.set_index("method")
    assert row.loc["model", "auc_ci_low"] == auc["ci_low"]
    assert row.loc["model @ R2 specificity", "ppv"] == model_at["estimate"]
    assert row.loc["reader R3", "specificity"] == by[("reader:R3", "specificity")]["estimate"]
    assert np.isnan(row.loc["model @ R1 specificity", "auc"])
    # the flat names for the UI are derived from the records
    assert ev.metrics["model_auc"] == auc["estimate"] and ev.metrics["reader_R1_auc_ci_high"] == \
        by[("reader:R1", "auc")]["ci_high"]
    assert ev.metrics["model_at_R2_specificity_ppv"] == model_at["estimate"]


def test_one_bootstrap_of_the_model_auc_per_evaluation(tmp_path, monkeypatch):
    pred, readings, thresholds = make_tables(n_patients=20)
    calls = []
    original = stats.cluster_bootstrap_auc

    def counting(truth, score, clusters, **kwargs):
        calls.append(len(truth))
        return original(truth, score, clusters, **kwargs)

    monkeypatch.setattr(stats, "cluster_bootstrap_auc", counting)
    ev = evaluate(pred, cohort_of(pred, readings), thresholds, tmp_path, settings=settings(n_boot=50), header={})
    n_readers, n_patient_level = 3, 4 + 3 * 2  # model by 4 aggregations, each reader by min and max
    assert len(calls) == 1 + n_readers + n_patient_level
    assert calls.count(len(pred)) == 1 + n_readers  # lesion level: the model once, each reader once
    assert "model_auc" in ev.metrics


def test_header_on_top_of_the_report_and_in_report_json(result):
    pred, readings, thresholds, out, ev = result
    md = (out / "report.md").read_text()
    positions = [md.index(f"| {key} | {value} |") for key, value in HEADER.items()]
    assert positions == sorted(positions) and positions[-1] < md.index("Unit of prediction")
    assert list(json.loads((out / "report.json").read_text())["header"].items()) == list(HEADER.items())
    assert "<td>validation design</td>" in (out / "report.html").read_text()


def test_positive_call_convention_stated_once(result):
    md = (result[3] / "report.md").read_text()
    assert md.count("PPV = P(pCR | called complete response)") == 1
    assert md.index("Convention:") < md.index("1. Discrimination")


def test_huge_hillis_df_comes_with_its_reason(tmp_path):
    """Readers who agree almost perfectly: the reader x test variance estimate is ~0, Hillis' df
    explodes; the report must say why instead of printing the number bare."""
    pred, readings, thresholds = make_tables(n_patients=40, readers=("R1", "R2"))
    r1 = readings[readings.reader_id == "R1"]
    readings = pd.concat([r1, r1.assign(reader_id="R2")], ignore_index=True)  # R2 reads exactly as R1
    ev = evaluate(pred, cohort_of(pred, readings), thresholds, tmp_path, settings=settings(n_boot=50), header={})
    rrrc = json.loads((tmp_path / "report.json").read_text())["mrmc"]["rrrc"]
    assert rrrc["df2_infinite"] or rrrc["df2"] > stats.HILLIS_DF_NOTE_ABOVE
    assert "reader x test interaction variance" in rrrc["note"]
    md = (tmp_path / "report.md").read_text()
    assert "(see note below)" in md and "Note (random readers, random cases): Hillis denominator df" in md
    assert ev.metrics["mrmc_p"] >= 0
