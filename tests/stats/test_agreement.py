"""Cohen's and Fleiss' kappa (dlm_ml.stats.agreement).

Published figures:
* SAS PROC FREQ (AGREE) on a 3 × 3 table, as quoted in statsmodels
  ``statsmodels/stats/tests/test_inter_rater.py`` (``table10``).
* R ``irr::kappa2`` on the ``anxiety`` data and ``irr::kappam.fleiss`` on the
  ``diagnoses`` data (Fleiss 1971), as quoted in the same statsmodels file.
* Wikipedia's Fleiss' kappa example (10 subjects × 14 raters): kappa = 0.210.
Point estimates of Cohen's kappa are also checked against scikit-learn.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from dlm_ml.stats.agreement import cohen_kappa, fleiss_kappa


def assert_printed(value: float, printed: str) -> None:
    decimals = -Decimal(printed).as_tuple().exponent
    tol = 0.5 * 10.0 ** (-decimals) * (1 + 1e-9) + 1e-15
    assert abs(value - float(printed)) <= tol, f"{value!r} does not print as {printed}"


def _from_table(table) -> tuple[list[int], list[int]]:
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [i] * count
            b += [j] * count
    return a, b


TABLE10 = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]

# irr's `anxiety` data (20 subjects × 3 raters), column-major as in R.
ANXIETY = np.array([
    3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3, 3, 6, 4,
    6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4, 2, 1, 4, 4, 3, 2,
    1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]).reshape(20, 3, order="F")

# irr's `diagnoses` data: 30 patients × 6 psychiatrists, 5 categories (Fleiss 1971).
DIAGNOSES = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5]])

# Wikipedia "Fleiss' kappa" worked example: counts of 14 raters in 5 categories.
WIKI_COUNTS = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def _long(wide: np.ndarray) -> pd.DataFrame:
    return (pd.DataFrame(wide).rename_axis("subject").reset_index()
            .melt(id_vars="subject", var_name="rater", value_name="rating"))


# --------------------------------------------------------------------------- Cohen
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_point_estimate_matches_sklearn(weights, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 200)
    b = np.clip(a + rng.integers(-2, 3, 200) * (rng.random(200) < 0.5), 1, 5)
    res = cohen_kappa(a, b, weights=weights)
    assert res.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    assert res.n == 200 and res.categories == (1, 2, 3, 4, 5)
    assert res.table.sum() == 200


def test_cohen_unweighted_matches_sas():
    res = cohen_kappa(*_from_table(TABLE10))
    for value, printed in zip(
            (res.kappa, res.se, res.ci_low, res.ci_high, res.se_null, res.z, res.p_value),
            ("0.4842", "0.1380", "0.2137", "0.7547", "0.1484", "3.2626", "0.0011")):
        assert_printed(value, printed)


def test_cohen_linear_weighted_matches_sas():
    res = cohen_kappa(*_from_table(TABLE10), weights="linear")
    for value, printed in zip(
            (res.kappa, res.se, res.ci_low, res.ci_high, res.se_null, res.z, res.p_value),
            ("0.4701", "0.1457", "0.1845", "0.7558", "0.1426", "3.2971", "0.0010")):
        assert_printed(value, printed)


@pytest.mark.parametrize("weights, kappa, z, p", [
    (None, "-0.006289308", "-0.0604067", "0.9518317"),
    ("linear", "0.1459075", "1.282472", "0.1996772"),
    ("quadratic", "0.2520325", "1.437451", "0.1505898"),
])
def test_cohen_matches_irr_kappa2(weights, kappa, z, p):
    res = cohen_kappa(ANXIETY[:, 1], ANXIETY[:, 2], weights=weights)
    assert_printed(res.kappa, kappa)
    assert_printed(res.z, z)
    assert_printed(res.p_value, p)


def test_cohen_perfect_agreement_and_string_labels():
    res = cohen_kappa(["pcr", "viable", "pcr"], ["pcr", "viable", "pcr"])
    assert res.kappa == 1.0 and res.se == 0.0
    assert res.categories == ("pcr", "viable")
    assert res.observed_agreement == 1.0


def test_cohen_categories_argument():
    a, b = [1, 2, 3, 3, 2], [1, 2, 2, 3, 3]
    base = cohen_kappa(a, b)
    extra = cohen_kappa(a, b, categories=[1, 2, 3, 4])
    assert extra.kappa == pytest.approx(base.kappa)  # unused category: no effect unweighted
    # Weighted kappa only depends on the spacing of the categories: one added at
    # the end rescales all distances (no change), one added between them does not.
    linear = cohen_kappa(a, b, weights="linear").kappa
    assert cohen_kappa(a, b, weights="linear", categories=[1, 2, 3, 4]).kappa == pytest.approx(
        linear)
    assert cohen_kappa(a, b, weights="linear", categories=[1, 1.5, 2, 3]).kappa != pytest.approx(
        linear)
    with pytest.raises(ValueError, match=r"not in `categories`: \[3\]"):
        cohen_kappa(a, b, categories=[1, 2])


def test_cohen_ci_uses_alpha():
    a, b = _from_table(TABLE10)
    narrow, wide = cohen_kappa(a, b, alpha=0.2), cohen_kappa(a, b, alpha=0.01)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


@pytest.mark.parametrize("a, b, kwargs, message", [
    ([1, 2], [1, 2, 3], {}, "same subjects"),
    ([1, None, 2], [1, 2, 2], {}, "missing rating"),
    ([1, 1], [1, 1], {}, "at least 2 categories"),
    ([1, 2], [1, 2], {"weights": "cubic"}, "weights"),
    ([1, 2], [1, 2], {"alpha": 0}, "alpha"),
])
def test_cohen_errors(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cohen_kappa(a, b, **kwargs)


# --------------------------------------------------------------------------- Fleiss
def test_fleiss_matches_irr_on_fleiss_1971_diagnoses():
    res = fleiss_kappa(_long(DIAGNOSES))
    assert_printed(res.kappa, "0.4302445")
    assert_printed(res.z, "17.65183")
    assert res.n_subjects == 30 and res.n_raters == 6 and res.categories == (1, 2, 3, 4, 5)
    assert res.p_value < 1e-60
    assert res.ci_low < res.kappa < res.ci_high


def test_fleiss_counts_layout_matches_wikipedia():
    res = fleiss_kappa(WIKI_COUNTS)
    assert_printed(res.kappa, "0.210")
    assert_printed(res.observed_agreement, "0.378")
    assert_printed(res.expected_agreement, "0.213")
    assert res.categories == (0, 1, 2, 3, 4) and res.n_raters == 14


def test_fleiss_long_and_counts_layouts_agree():
    long = _long(DIAGNOSES)
    counts = pd.crosstab(long["subject"], long["rating"]).to_numpy()
    a, b = fleiss_kappa(long), fleiss_kappa(counts, categories=[1, 2, 3, 4, 5])
    for field in ("kappa", "se", "se_null", "z", "ci_low", "ci_high"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12)
    pd.testing.assert_frame_equal(a.per_category, b.per_category)


def _fleiss_plain(counts: np.ndarray) -> float:
    n_sub, n_rat = counts.shape[0], counts[0].sum()
    p = counts.sum(0) / (n_sub * n_rat)
    p_i = ((counts ** 2).sum(1) - n_rat) / (n_rat * (n_rat - 1))
    return (p_i.mean() - (p ** 2).sum()) / (1 - (p ** 2).sum())


def test_fleiss_jackknife_se_matches_bruteforce():
    rng = np.random.default_rng(7)
    counts = rng.multinomial(4, [0.5, 0.3, 0.2], size=40)
    res = fleiss_kappa(counts, alpha=0.1)
    loo = np.array([_fleiss_plain(np.delete(counts, i, axis=0)) for i in range(40)])
    se = np.sqrt(39 / 40 * ((loo - loo.mean()) ** 2).sum())
    assert res.se == pytest.approx(se, rel=1e-12)
    assert res.kappa == pytest.approx(_fleiss_plain(counts), abs=1e-14)
    assert res.ci_high - res.kappa == pytest.approx(1.6448536269514722 * se, rel=1e-9)


def test_fleiss_two_categories_per_category_equals_overall():
    rng = np.random.default_rng(8)
    wide = (rng.random((50, 4)) < np.linspace(0.1, 0.9, 50)[:, None]).astype(int)
    res = fleiss_kappa(_long(wide))
    np.testing.assert_allclose(res.per_category["kappa"], res.kappa, rtol=1e-12)


def test_fleiss_results_serialise_and_print():
    res = fleiss_kappa(_long(DIAGNOSES))
    payload = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert payload["kappa"] == pytest.approx(res.kappa)
    assert len(payload["per_category"]) == 5
    assert "0.430245" in res.summary() and "Fleiss, Nee & Landis" in res.summary()
    ck = cohen_kappa(*_from_table(TABLE10))
    json.dumps(ck.to_dict(), allow_nan=False)
    assert "0.484163" in ck.summary()


@pytest.mark.parametrize("data, message", [
    (_long(DIAGNOSES).iloc[1:], "same number of ratings"),
    (pd.concat([_long(DIAGNOSES), _long(DIAGNOSES).iloc[:1]]), "duplicated subject × rater"),
    (np.array([[1, 2], [2, 2]]), "sum to the same number"),
    (np.array([[1.5, 1.5], [2, 1]]), "non-negative integer"),
    (np.array([[1, 0], [0, 1]]), "at least 2 ratings per subject"),
    (pd.DataFrame({"x": ["a", "b"]}), "neither a long table"),
])
def test_fleiss_errors(data, message):
    with pytest.raises(ValueError, match=message):
        fleiss_kappa(data)
