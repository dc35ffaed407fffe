"""Proportions, diagnostic metrics, thresholds and McNemar: R / statsmodels references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from dlm_ml.stats import (
    confusion_counts,
    diagnostic_metrics,
    mcnemar_from_table,
    mcnemar_test,
    proportion_ci,
    threshold_for_sensitivity,
    threshold_for_specificity,
)


# --------------------------------------------------------------------------- binomial CIs
def test_binom_test_conover_clopper_pearson():
    res = proportion_ci(682, 925, method="clopper-pearson")
    assert res.ci_low == pytest.approx(0.7076683, abs=5e-8)
    assert res.ci_high == pytest.approx(0.7654066, abs=5e-8)
    assert res.estimate == pytest.approx(682 / 925)


def test_statsmodels_18_of_20():
    cp = proportion_ci(18, 20, method="clopper-pearson")
    assert (cp.ci_low, cp.ci_high) == pytest.approx((0.6830172859809176, 0.9876514728297052), abs=1e-8)
    w = proportion_ci(18, 20, method="wilson")
    assert (w.ci_low, w.ci_high) == pytest.approx((0.6989663547715128, 0.972133518786232), abs=1e-8)


def test_all_reference_cases_against_scipy(refdata_stats):
    """Every case of the file, both methods, against scipy's independent binomtest intervals."""
    cases = pd.read_csv(refdata_stats / "binomial_reference_cases.csv")
    assert len(cases) >= 9
    for row in cases.itertuples():
        ref = binomtest(int(row.x), int(row.n))
        for ours, theirs in (("clopper-pearson", "exact"), ("wilson", "wilson")):
            got = proportion_ci(int(row.x), int(row.n), method=ours)
            exp = ref.proportion_ci(confidence_level=0.95, method=theirs)
            assert (got.ci_low, got.ci_high) == pytest.approx((exp.low, exp.high), abs=1e-10), row.case_id
    assert proportion_ci(0, 30, method="wilson").ci_low == 0.0
    assert proportion_ci(30, 30, method="wilson").ci_high == 1.0


def test_proportion_ci_edge_cases():
    empty = proportion_ci(0, 0)
    assert math.isnan(empty.estimate) and math.isnan(empty.ci_low)
    narrow = proportion_ci(18, 20, alpha=0.5)
    wide = proportion_ci(18, 20, alpha=0.01)
    assert wide.ci_low < narrow.ci_low < 0.9 < narrow.ci_high < wide.ci_high
    with pytest.raises(ValueError, match="cannot exceed"):
        proportion_ci(5, 4)
    with pytest.raises(ValueError, match="`successes`"):
        proportion_ci(-1, 4)
    with pytest.raises(ValueError, match="`n`"):
        proportion_ci(1, 2.5)
    with pytest.raises(ValueError, match="method"):
        proportion_ci(1, 4, method="wald")


# --------------------------------------------------------------------------- McNemar
def test_mcnemar_r_performance(refdata_stats):
    tab = pd.read_csv(refdata_stats / "mcnemar_reference_tables.csv").set_index("table_id")
    r = tab.loc["R_Performance"]
    res = mcnemar_from_table(r.n11, r.n12, r.n21, r.n22)
    assert res.method == "chi2-corrected"
    assert res.statistic == pytest.approx(16.818, abs=5e-4)
    assert res.p_value == pytest.approx(4.115e-05, abs=5e-9)
    assert (res.n10, res.n01) == (150, 86)


def test_mcnemar_statsmodels_ctab0(refdata_stats):
    tab = pd.read_csv(refdata_stats / "mcnemar_reference_tables.csv").set_index("table_id")
    r = tab.loc["SM_ctab0"]
    cells = (r.n11, r.n12, r.n21, r.n22)
    assert mcnemar_from_table(*cells).p_value == pytest.approx(0.606905427217951, abs=1e-8)
    ex = mcnemar_from_table(*cells, exact=True)
    assert ex.p_value == pytest.approx(0.60759136127308, abs=1e-8)
    assert ex.method == "exact" and ex.statistic == 15
    un = mcnemar_from_table(*cells, correction=False)
    assert un.statistic == pytest.approx(0.470588235294118, abs=1e-8)
    assert un.p_value == pytest.approx(0.492716677227088, abs=1e-8)


def test_mcnemar_other_tables_by_formula(refdata_stats):
    """Remaining tables: chi² by the textbook formula and exact p by scipy's binomtest."""
    tab = pd.read_csv(refdata_stats / "mcnemar_reference_tables.csv")
    for r in tab.itertuples():
        b, c = r.n12, r.n21
        res = mcnemar_from_table(r.n11, b, c, r.n22)
        if b == c:
            assert res.statistic == 0 and res.p_value == 1
        else:
            assert res.statistic == pytest.approx((abs(b - c) - 1) ** 2 / (b + c))
        ex = mcnemar_from_table(r.n11, b, c, r.n22, exact=True)
        assert ex.p_value == pytest.approx(min(1.0, binomtest(b, b + c).pvalue))
        # symmetric in the two tests
        assert mcnemar_from_table(r.n11, c, b, r.n22).p_value == pytest.approx(res.p_value)


def test_mcnemar_from_calls_matches_table():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.random(200) < 0.8, a, 1 - a)
    res = mcnemar_test(a, b)
    n10 = int(np.sum((a == 1) & (b == 0)))
    n01 = int(np.sum((a == 0) & (b == 1)))
    assert (res.n10, res.n01) == (n10, n01)
    tab = mcnemar_from_table(int(np.sum(a & b)), n10, n01, int(np.sum((1 - a) & (1 - b))))
    assert res == tab
    assert mcnemar_test(a, a).p_value == 1.0
    assert mcnemar_test(a, a, exact=True).p_value == 1.0
    with pytest.raises(ValueError, match="call_b"):
        mcnemar_test(a, np.r_[b[:-1], 2])


# --------------------------------------------------------------------------- diagnostics
def test_confusion_and_diagnostic_metrics():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    call = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    cc = confusion_counts(truth, call)
    assert (cc.tp, cc.fn, cc.fp, cc.tn, cc.n) == (3, 1, 1, 5, 10)
    dm = diagnostic_metrics(truth, call, method="clopper-pearson")
    assert dm.sensitivity.estimate == 0.75 and dm.sensitivity.n == 4
    assert dm.specificity.estimate == pytest.approx(5 / 6)
    assert dm.ppv.estimate == 0.75 and dm.npv.estimate == pytest.approx(5 / 6)
    assert dm.accuracy.estimate == 0.8
    ref = proportion_ci(3, 4, method="clopper-pearson")
    assert (dm.sensitivity.ci_low, dm.sensitivity.ci_high) == (ref.ci_low, ref.ci_high)
    d = dm.to_dict()
    assert d["ppv"]["successes"] == 3 and d["counts"]["tn"] == 5


def test_undefined_ppv_is_nan():
    dm = diagnostic_metrics([1, 0, 1], [0, 0, 0])
    assert math.isnan(dm.ppv.estimate) and dm.ppv.n == 0
    assert dm.sensitivity.estimate == 0.0


# --------------------------------------------------------------------------- thresholds
def _brute_thresholds(truth, score):
    truth = np.asarray(truth).astype(bool)
    out = []
    for t in np.r_[np.unique(score), np.inf]:
        call = score >= t
        out.append((t, np.mean(call[truth]), np.mean(~call[~truth])))
    return out


@pytest.mark.parametrize("target", [0.0, 0.5, 0.8, 0.9, 0.95, 1.0])
def test_threshold_for_specificity_brute_force(target):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 120)
    score = np.round(truth + rng.normal(size=120), 1)  # ties
    res = threshold_for_specificity(truth, score, target)
    feasible = [(t, se, sp) for t, se, sp in _brute_thresholds(truth, score) if sp >= target]
    best = max(feasible, key=lambda r: (r[1], -r[0]))
    assert res.threshold == best[0]
    assert (res.sensitivity, res.specificity) == pytest.approx(best[1:])
    assert res.specificity >= target and res.criterion == "specificity"


@pytest.mark.parametrize("target", [0.0, 0.5, 0.8, 0.9, 1.0])
def test_threshold_for_sensitivity_brute_force(target):
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 120)
    score = np.round(truth + rng.normal(size=120), 1)
    res = threshold_for_sensitivity(truth, score, target)
    feasible = [(t, se, sp) for t, se, sp in _brute_thresholds(truth, score) if se >= target]
    best = max(feasible, key=lambda r: (r[2], r[0]))
    assert res.threshold == best[0]
    assert (res.sensitivity, res.specificity) == pytest.approx(best[1:])


def test_threshold_ties_and_infinite():
    truth = np.array([0, 0, 1, 0, 1, 1])
    score = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 4.0])
    # spec >= 0.5: t=2 gives spec 1/3 (ties at 2 both positive), t=3 gives 2/3
    res = threshold_for_specificity(truth, score, 0.5)
    assert res.threshold == 3.0 and res.specificity == pytest.approx(2 / 3)
    assert threshold_for_specificity(truth, score, 1.0).threshold == 4.0
    top_neg = threshold_for_specificity([0, 1, 0], [1.0, 2.0, 3.0], 1.0)
    assert top_neg.threshold == np.inf and top_neg.sensitivity == 0.0
    with pytest.raises(ValueError, match="target"):
        threshold_for_specificity(truth, score, 1.2)
