"""The per-fold section: each test fold's AUC and calibration equal dlm_ml.stats on that fold's rows,
the pooled row equals the overall figures, a fold with one outcome class is listed as unavailable,
an external design (one test fold) shows that fold only; all of it reaches the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml import stats
from dlm_ml.data.folds import FOLD_LABEL_COLUMN
from dlm_ml.evaluation.records import headline_metrics
from dlm_ml.evaluation.report import build_report
from dlm_ml.evaluation.sections.folds import per_fold
from tests.evaluation.helpers import counts_for, make_tables, settings

SITES = {0: "site S1", 1: "site S2", 2: "site S3"}


@pytest.fixture(scope="module")
def tables():
    pred, readings, thresholds = make_tables()
    return pred.assign(**{FOLD_LABEL_COLUMN: pred.fold.map(SITES)}), readings, thresholds


@pytest.fixture(scope="module")
def report(tables, tmp_path_factory):
    pred, readings, thresholds = tables
    out = tmp_path_factory.mktemp("folds_report")
    return build_report(pred, readings, thresholds, counts_for(pred, readings), out, settings=settings())


def _expected(frame: pd.DataFrame) -> dict:
    s = settings()
    truth, prob, patients = frame.pcr.to_numpy(), frame.prob_pcr.to_numpy(), frame.patient_id.to_numpy()
    ob = stats.clustered_auc(truth, prob, patients, alpha=s.alpha)
    cal = stats.calibration_intercept_slope(truth, prob)
    return {"auc": ob.auc, "ob_ci": (ob.ci_low, ob.ci_high), "intercept": cal.intercept, "slope": cal.slope,
            "intercept_se": cal.intercept_se, "slope_se": cal.slope_se, "brier": stats.brier_score(truth, prob),
            "n": (len(frame), frame.patient_id.nunique(), int(frame.pcr.sum()))}


def _observed(row: dict) -> dict:
    ob, fit = row["obuchowski"], row["recalibration"]
    return {"auc": ob["auc"], "ob_ci": (ob["ci_low"], ob["ci_high"]), "intercept": fit["intercept"],
            "slope": fit["slope"], "intercept_se": fit["intercept_se"], "slope_se": fit["slope_se"],
            "brier": row["brier"],
            "n": (row["n_lesions"], row["n_patients"], row["n_pcr"])}


def _assert_same(observed: dict, expected: dict):
    assert observed.keys() == expected.keys()
    for key, value in expected.items():
        assert observed[key] == pytest.approx(value, rel=1e-12), key


def test_each_fold_equals_stats_on_its_rows(tables, report):
    pred = tables[0]
    section = report.sections["folds"]
    assert [r["fold"] for r in section["folds"]] == [0, 1, 2]
    assert [r["label"] for r in section["folds"]] == ["site S1", "site S2", "site S3"]
    for row in section["folds"]:
        assert row["available"]
        _assert_same(_observed(row), _expected(pred[pred.fold == row["fold"]]))
    aucs = [r["obuchowski"]["auc"] for r in section["folds"]]
    spread = section["spread"]
    assert (spread["n_folds"], spread["n_folds_with_auc"]) == (3, 3)
    assert (spread["auc_min"], spread["auc_max"]) == (min(aucs), max(aucs))
    assert spread["auc_mean"] == pytest.approx(np.mean(aucs), rel=1e-12)
    assert spread["pooled_minus_mean"] == pytest.approx(section["pooled"]["obuchowski"]["auc"] - np.mean(aucs))


def test_pooled_row_equals_the_overall_figures(tables, report):
    pred = tables[0]
    pooled = report.sections["folds"]["pooled"]
    _assert_same(_observed(pooled), _expected(pred))
    overall = report.sections["discrimination"][0]["obuchowski"]
    assert [pooled["obuchowski"][k] for k in ("auc", "ci_low", "ci_high")] == [overall[k] for k in
                                                                              ("auc", "ci_low", "ci_high")]
    assert pooled["brier"] == report.sections["calibration"]["brier"]
    metrics = headline_metrics(report.sections)
    aucs = [r["obuchowski"]["auc"] for r in report.sections["folds"]["folds"]]
    assert (metrics["fold_auc_min"], metrics["fold_auc_max"]) == (min(aucs), max(aucs))


def test_report_shows_folds_pooled_and_spread(report):
    md = report.markdown
    section = md[md.index("9. Each test fold"):]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == ["| site S1", "| site S2", "| site S3",
                                                            "| pooled (all test folds)"]
    assert "Per-fold AUC over 3 of 3 folds: mean" in section


def test_pooled_auc_below_every_fold_when_fold_models_are_scaled_differently():
    """Perfect ranking inside each fold, but fold 1's model predicts everything higher than fold
    0's: the pooled AUC falls below both per-fold AUCs, and the section shows it."""
    rows = []
    for fold, shift in ((0, 0.0), (1, 0.5)):
        for i in range(20):
            pcr = i % 2
            rows.append({"patient_id": f"F{fold}P{i:02d}", "lesion_id": "L1", "fold": fold, "pcr": pcr,
                         "prob_pcr": shift + 0.1 + 0.3 * pcr + 0.001 * i})
    section = per_fold(pd.DataFrame(rows), settings())
    assert [r["obuchowski"]["auc"] for r in section["folds"]] == [1.0, 1.0]
    assert section["pooled"]["obuchowski"]["auc"] < 0.8
    assert section["spread"]["pooled_minus_mean"] < -0.2


def test_one_class_fold_is_unavailable_with_its_reason(tables):
    pred = tables[0]
    pred = pred.assign(pcr=np.where(pred.fold == 2, 0, pred.pcr))
    section = per_fold(pred, settings())
    third = section["folds"][2]
    assert third["available"] is False and "site S3" in third["reason"] and "all pcr=0" in third["reason"]
    assert third["n_lesions"] == int((pred.fold == 2).sum()) and "obuchowski" not in third
    assert section["spread"]["n_folds_with_auc"] == 2
    assert section["spread"]["auc_max"] == max(r["obuchowski"]["auc"] for r in section["folds"][:2])


def test_external_design_shows_its_one_fold_only(tables, tmp_path):
    pred, readings, thresholds = tables
    external = pred.assign(fold=0, **{FOLD_LABEL_COLUMN: "external: S3"})
    section = per_fold(external, settings())
    assert section["pooled"] is None and len(section["folds"]) == 1
    _assert_same(_observed(section["folds"][0]), _expected(external))
    report = build_report(external, readings, thresholds.assign(fold=0).drop_duplicates("reader_id"),
                          counts_for(external, readings), tmp_path, settings=settings())
    md = report.markdown[report.markdown.index("9. Each test fold"):]
    assert "its figures are the pooled result" in md and "| external: S3 |" in md and "pooled (" not in md
    assert "fold_auc_mean" not in headline_metrics(report.sections)


def test_folds_without_labels_and_inconsistent_labels(tables):
    pred = tables[0]
    section = per_fold(pred.drop(columns=FOLD_LABEL_COLUMN), settings())
    assert [r["label"] for r in section["folds"]] == ["fold 0", "fold 1", "fold 2"]
    mixed = pred.copy()
    mixed.loc[mixed.index[0], FOLD_LABEL_COLUMN] = "site S9"
    with pytest.raises(ValueError, match="one label per fold"):
        per_fold(mixed, settings())
