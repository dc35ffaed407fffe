"""The evaluation report: every section present, numbers equal to direct calls of dlm_ml.stats,
left-out lesions counted, figures valid, and the one-reader and partly-read cases handled."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dlm_ml import stats
from dlm_ml.evaluation.records import headline_metrics
from dlm_ml.evaluation.render import fmt_df
from dlm_ml.evaluation.report import build_report
from dlm_ml.evaluation.sections import paired
from dlm_ml.evaluation.thresholds import apply_thresholds
from tests.evaluation.helpers import N_BOOT, SEED, counts_for, make_tables, settings

SECTIONS = {"counts", "discrimination", "roc_band", "comparisons", "mrmc", "operating_points", "agreement",
            "calibration", "decision_curve", "patient_level", "folds"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DECISION_THRESHOLDS = settings().threshold_grid


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    pred, readings, thresholds = make_tables()
    out = tmp_path_factory.mktemp("report")
    counts = counts_for(pred, readings, without_outcome=7, without_prediction=2)
    report = build_report(pred, readings, thresholds, counts, out, settings=settings())
    return pred, readings, thresholds, out, report


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path.name} holds {constant}, not valid JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_all_sections_written(full):
    pred, readings, thresholds, out, report = full
    data = _strict_json(out / "report.json")
    assert set(data) == SECTIONS | {"header"}
    for name in ("report.md", "report.html", "report.json", "roc.png", "calibration.png", "decision_curve.png"):
        assert (out / name) in report.files and (out / name).stat().st_size > 0
    assert data["mrmc"]["available"] and data["agreement"]["available"] and data["decision_curve"]["available"]
    assert [r["method"] for r in data["discrimination"]] == ["model", "reader R1", "reader R2", "reader R3"]
    assert (out / "report.md").read_text() == report.markdown


def test_numbers_equal_direct_stats_calls(full):
    pred, readings, thresholds, out, report = full
    s = report.sections
    r1 = paired(pred, readings, "R1")
    truth, prob, score, patients = r1.pcr, r1.prob_pcr, r1.score.astype(float), r1.patient_id
    cmp = s["comparisons"][0]
    assert cmp["reader"] == "R1"
    delong = stats.delong_test(truth, prob, score)
    assert (cmp["delong"]["p_value"], cmp["delong"]["diff"]) == pytest.approx((delong.p_value, delong.diff), rel=1e-12)
    ob = stats.clustered_auc_difference(truth, prob, score, patients)
    assert cmp["obuchowski"]["p_value"] == pytest.approx(ob.p_value, rel=1e-12)
    assert (cmp["obuchowski"]["se"], cmp["obuchowski"]["diff"]) == pytest.approx((ob.se, ob.diff), rel=1e-12)

    model = s["discrimination"][0]
    boot = stats.cluster_bootstrap_auc(pred.pcr, pred.prob_pcr, pred.patient_id, n_boot=N_BOOT, seed=SEED)
    assert (model["bootstrap"]["ci_low"], model["bootstrap"]["ci_high"]) == pytest.approx((boot.ci_low, boot.ci_high))
    assert model["obuchowski"]["se"] == pytest.approx(stats.clustered_auc(pred.pcr, pred.prob_pcr, pred.patient_id).se)
    assert model["delong"]["se"] == pytest.approx(stats.delong_auc_ci(pred.pcr, pred.prob_pcr).se)

    long = pd.concat([paired(pred, readings, r)[["patient_id", "lesion_id", "score"]].assign(reader=r)
                      for r in ("R1", "R2", "R3")])
    cases = pred.assign(case=pred.patient_id + "/" + pred.lesion_id)
    long["case"] = long.patient_id + "/" + long.lesion_id
    direct = stats.model_vs_readers(cases, long, case="case", truth="pcr", prob="prob_pcr", rating="score",
                                    cluster="patient_id")
    assert s["mrmc"]["rrrc"]["p_value"] == pytest.approx(direct.rrrc.p_value, rel=1e-9)
    assert s["mrmc"]["rrrc"]["difference"]["estimate"] == pytest.approx(direct.rrrc.differences.estimate[0])

    op = s["operating_points"][0]
    model_calls = apply_thresholds(r1, thresholds, "R1")
    assert op["mcnemar"]["p_value"] == pytest.approx(stats.mcnemar_test(model_calls, r1.call, exact=True).p_value)
    dm = stats.diagnostic_metrics(truth, r1.call)
    assert op["reader_calls"]["sensitivity"]["ci_low"] == pytest.approx(dm.sensitivity.ci_low)
    assert op["reader_calls"]["viable_among_called_cr"]["estimate"] == pytest.approx(1 - dm.ppv.estimate)
    assert op["model_matched"]["specificity"]["estimate"] == pytest.approx(
        stats.diagnostic_metrics(truth, model_calls).specificity.estimate)

    cal = s["calibration"]
    assert cal["brier"] == pytest.approx(stats.brier_score(pred.pcr, pred.prob_pcr))
    fit = stats.calibration_intercept_slope(pred.pcr, pred.prob_pcr)
    assert cal["recalibration"]["slope"] == pytest.approx(fit.slope)

    r2 = paired(pred, readings, "R2")
    kappa = stats.cohen_kappa(r1.score, r2.score, weights="quadratic", categories=[1, 2, 3, 4, 5]).kappa
    assert s["agreement"]["pairwise"][0]["score_quadratic"]["kappa"] == pytest.approx(kappa)

    agg = stats.aggregate_to_patient(pred.patient_id, pred.pcr, pred.prob_pcr, method="min")
    patient_min = next(m for m in s["patient_level"]["methods"] if m["method"] == "model (min)")
    assert patient_min["delong"]["auc"] == pytest.approx(stats.roc_auc(agg.truth, agg.prob))

    metrics = headline_metrics(s)
    assert metrics["delong_p_vs_R1"] == cmp["delong"]["p_value"] and metrics["mrmc_p"] == s["mrmc"]["rrrc"]["p_value"]
    assert {"obuchowski_p_vs_R3", "brier", "calibration_slope", "mcnemar_p_vs_R2"} <= set(metrics)


def test_decision_curve_framing(full):
    """Leave = treat: 'leave all' has the treat-all net benefit, and net benefit in this framing
    equals the net resections avoided per lesion against 'resect all' in the resect framing."""
    pred, readings, thresholds, out, report = full
    curve = pd.DataFrame(report.sections["decision_curve"]["curve"])
    pt = np.asarray(DECISION_THRESHOLDS)
    prevalence = pred.pcr.mean()
    leave_all = curve[curve.strategy == "leave all"].net_benefit.to_numpy()
    assert leave_all == pytest.approx(prevalence - (1 - prevalence) * pt / (1 - pt))
    assert (curve[curve.strategy == "resect all"].net_benefit == 0).all()
    r1 = paired(pred, readings, "R1")
    resect = stats.decision_curve(1 - r1.pcr, {"R1": 1 - r1.call}, 1 - pt, treat_all_label="resect all",
                                  treat_none_label="leave all")
    avoided = resect[resect.strategy == "R1"].net_interventions_avoided.to_numpy()
    leave_nb = curve[curve.strategy == "reader R1 calls"].net_benefit.to_numpy()
    assert leave_nb == pytest.approx(avoided)
    assert "LEAVE a lesion in place" in report.markdown and "'resect all' is treat-none" in report.markdown


def test_counts_shown_first(full):
    pred, readings, thresholds, out, report = full
    md = report.markdown
    assert "| lesions without outcome | 7 |" in md and "| lesions without prediction | 2 |" in md
    assert md.index("lesions without outcome") < md.index("1. Discrimination")


def test_png_and_html(full):
    pred, readings, thresholds, out, report = full
    for name in ("roc.png", "calibration.png", "decision_curve.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count("<table>") >= 10 and '<img src="roc.png"' in page and '<img src="decision_curve.png"' in page
    assert "<th>Obuchowski CI</th>" in page and "viable tumour among called CR" in page


def test_one_reader_mrmc_absent_with_reason(tmp_path):
    pred, readings, thresholds = make_tables(readers=("R1",))
    report = build_report(pred, readings, thresholds, counts_for(pred, readings), tmp_path, settings=settings())
    mrmc = _strict_json(tmp_path / "report.json")["mrmc"]
    assert mrmc["available"] is False and "at least 2 readers" in mrmc["reason"]
    assert "MRMC analysis not shown" in report.markdown and "at least 2 readers" in report.markdown
    assert report.sections["agreement"]["available"] is False
    assert report.sections["comparisons"][0]["delong"]["available"]  # the single comparison is still there
    assert "mrmc_p" not in headline_metrics(report.sections)


def test_reader_who_read_only_some_lesions(tmp_path):
    pred, readings, thresholds = make_tables()
    rng = np.random.default_rng(1)
    r3 = readings[readings.reader_id == "R3"]
    dropped = r3.sample(frac=0.3, random_state=rng.integers(1 << 31)).index
    readings = readings.drop(index=dropped)
    n_read = len(pred) - len(dropped)
    counts = counts_for(pred, readings)
    assert counts["lesions_without_reading_R3"] == len(dropped)
    report = build_report(pred, readings, thresholds, counts, tmp_path, settings=settings())
    s = report.sections
    assert f"| lesions without reading R3 | {len(dropped)} |" in report.markdown
    assert s["counts"]["lesions_read_by_R3"] == n_read and s["counts"]["lesions_read_by_all_readers"] == n_read
    both = paired(pred, readings, "R3")
    cmp = next(c for c in s["comparisons"] if c["reader"] == "R3")
    assert cmp["n_lesions"] == n_read
    assert cmp["delong"]["p_value"] == pytest.approx(stats.delong_test(both.pcr, both.prob_pcr, both.score).p_value)
    assert cmp["delong"]["auc_a"] == pytest.approx(stats.roc_auc(both.pcr, both.prob_pcr))
    assert next(c for c in s["comparisons"] if c["reader"] == "R1")["n_lesions"] == len(pred)
    assert s["mrmc"]["n_lesions_used"] == n_read and s["mrmc"]["n_lesions_not_read_by_all"] == len(dropped)
    assert s["decision_curve"]["n_lesions"] == n_read
    assert s["agreement"]["fleiss_call"]["n_subjects"] == n_read
    not_full = [m["n_patients_not_fully_read"] for m in s["patient_level"]["methods"]
                if m["method"].startswith("reader R3")]
    assert not_full[0] > 0


def test_without_thresholds_matched_points_not_available(tmp_path):
    pred, readings, _ = make_tables()
    report = build_report(pred, readings, None, counts_for(pred, readings), tmp_path, settings=settings())
    op = report.sections["operating_points"][0]
    assert op["model_matched"]["available"] is False and "thresholds" in op["model_matched"]["reason"]
    assert op["reader_calls"]["sensitivity"]["n"] > 0
    assert "model at the matched threshold not available" in report.markdown
    assert not any(s.startswith("model @") for s in pd.DataFrame(report.sections["decision_curve"]["curve"]).strategy)
    assert math.isfinite(report.sections["calibration"]["brier"])


def test_degrees_of_freedom_spelt_out_when_effectively_infinite():
    assert fmt_df(None, infinite=True) == "∞"
    assert fmt_df(3.9e60) == "> 10⁶ (≈ ∞)"
    assert fmt_df(366.74) == "366.7"
