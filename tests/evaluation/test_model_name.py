"""evaluate(model_name=...): the report, the headline table and the figures name the model; method
ids and flat metric names stay 'model' (sweeps, dlm-compare and the tracking UI read them)."""

from __future__ import annotations

import json

import pytest

from dlm_ml.evaluation.evaluate import evaluate
from tests.evaluation.helpers import cohort_of, make_tables, settings


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pred, readings, thresholds = make_tables(n_patients=24)
    out = {}
    for name in ("model", "clinical_logistic"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, evaluate(pred, cohort_of(pred, readings), thresholds, folder, settings=settings(n_boot=50),
                                      header={}, model_name=name))
    return out


def test_report_and_headline_name_the_model(pair):
    folder, ev = pair["clinical_logistic"]
    md = (folder / "report.md").read_text()
    assert md.startswith("# pCR evaluation report: clinical_logistic vs readers")
    assert "| clinical_logistic | " in md and "AUC clinical_logistic" in md and "NB clinical_logistic" in md
    assert "clinical_logistic (min)" in md  # patient level
    methods = list(ev.table.method)
    assert methods[:3] == ["clinical_logistic", "reader R1", "clinical_logistic @ R1 specificity"]
    assert ev.table_text.splitlines()[1].startswith("clinical_logistic ")
    assert ev.model_name == "clinical_logistic"


def test_metric_keys_and_method_ids_unchanged(pair):
    (_, default), (folder, named) = pair["model"], pair["clinical_logistic"]
    assert set(named.metrics) == set(default.metrics) and "model_auc" in named.metrics
    assert [r["method_id"] for r in named.records] == [r["method_id"] for r in default.records]
    assert {r["model_name"] for r in named.records if r["role"] != "reader"} == {"clinical_logistic"}
    assert {r["model_name"] for r in named.records if r["role"] == "reader"} == {None}
    payload = json.loads((folder / "metrics.json").read_text())
    assert payload["model_name"] == "clinical_logistic"
    sections = json.loads((folder / "report.json").read_text())
    assert sections["discrimination"][0]["method"] == "model"  # the numbers keep the method id
