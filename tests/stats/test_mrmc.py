"""Obuchowski–Rockette MRMC analysis (dlm_ml.stats.mrmc).

Published figures: OR-DBM MRMC 2.51 on the Van Dyke data (as quoted in
shared/refdata/stats/EXPECTED.md, from RJafroc tests/testthat/goodValues361/
Iowa/VanDyke.txt) and MRMCaov's DeLong variant (MRMCaov docs/jss/MRMCaov.tex).
Figures not quoted in EXPECTED.md but printed in the same OR-DBM output file are
tested too and marked "OR-DBM output".
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from dlm_ml.stats.clustered import clustered_auc_difference
from dlm_ml.stats.mrmc import HILLIS_DF_NOTE_ABOVE, MRMCResult, model_vs_readers, mrmc, reader_by_test_variance
from dlm_ml.stats.roc import delong_test


def assert_printed(value: float, printed: str) -> None:
    """``value`` rounds to ``printed`` at the printed number of decimals."""
    decimals = -Decimal(printed).as_tuple().exponent
    tol = 0.5 * 10.0 ** (-decimals) * (1 + 1e-9) + 1e-15
    assert abs(value - float(printed)) <= tol, f"{value!r} does not print as {printed}"


@pytest.fixture(scope="module")
def vandyke(refdata_stats) -> pd.DataFrame:
    return pd.read_csv(refdata_stats / "MRMCaov_VanDyke.csv")


@pytest.fixture(scope="module")
def franken(refdata_stats) -> pd.DataFrame:
    return pd.read_csv(refdata_stats / "MRMCaov_Franken.csv")


@pytest.fixture(scope="module")
def vd(vandyke) -> MRMCResult:
    return mrmc(vandyke, test="treatment")


def _auc_bruteforce(truth: np.ndarray, score: np.ndarray) -> float:
    """AUC by explicit pair comparison (independent of the midrank code)."""
    x, y = score[truth == 1], score[truth == 0]
    d = x[:, None] - y[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def _simulate(rng, *, n_cases=60, n_readers=4, n_tests=2, effect=0.0, n_clusters=None,
              ties=True) -> pd.DataFrame:
    """Crossed MRMC ratings: case, reader and test×reader effects, optional clusters."""
    truth = (rng.random(n_cases) < 0.4).astype(int)
    truth[:2] = [0, 1]
    case_fx = rng.normal(size=n_cases)
    rows = []
    for i in range(n_tests):
        for j in range(n_readers):
            latent = (1.0 + effect * i) * truth + 0.7 * case_fx + rng.normal(0, 0.3) \
                + rng.normal(size=n_cases)
            rating = np.round(latent * 1.5) if ties else latent
            rows.append(pd.DataFrame({"reader": f"r{j}", "test": f"t{i}",
                                      "case": np.arange(n_cases), "truth": truth,
                                      "rating": rating}))
    df = pd.concat(rows, ignore_index=True)
    if n_clusters is not None:
        df["patient"] = df["case"] % n_clusters
    return df


# --------------------------------------------------------------------------- Van Dyke
def test_vandyke_reader_aucs_and_means(vd):
    aucs = vd.aucs.set_index(["test", "reader"])["auc"]
    t1 = ["0.91964573", "0.85877617", "0.90386473", "0.97310789", "0.82979066"]
    t2 = ["0.94782609", "0.90531401", "0.92173913", "0.99935588", "0.92995169"]
    for reader, (a, b) in enumerate(zip(t1, t2), start=1):
        assert_printed(aucs[(1, reader)], a)
        assert_printed(aucs[(2, reader)], b)
    means = vd.rrrc.tests.set_index("test")["auc"]
    assert_printed(means[1], "0.89703704")
    assert_printed(means[2], "0.94083736")
    assert_printed(vd.rrrc.differences.loc[0, "estimate"], "-0.04380032")
    assert vd.tests == (1, 2) and vd.readers == (1, 2, 3, 4, 5)
    assert (vd.n_cases, vd.n_positive, vd.n_negative) == (114, 45, 69)


def test_vandyke_or_components(vd):
    c = vd.components
    assert_printed(c.cov1, "0.00034661")
    assert_printed(c.cov2, "0.00034407")
    assert_printed(c.cov3, "0.00023903")
    assert_printed(c.var_error, "0.00080229")
    assert_printed(c.ms_t, "0.00479617")
    assert_printed(c.ms_tr, "0.00055103")
    # OR-DBM output: MS(R), per-treatment MS(R), Cov2 and Var(error).
    assert_printed(c.ms_r, "0.00383620")
    by_test = vd.components_by_test.set_index("test")
    assert_printed(by_test.loc[1, "ms_r"], "0.00308263")
    assert_printed(by_test.loc[2, "ms_r"], "0.00130460")
    assert_printed(by_test.loc[1, "cov2"], "0.00048396")
    assert_printed(by_test.loc[2, "cov2"], "0.00020419")
    assert_printed(by_test.loc[1, "var_error"], "0.00101410")
    assert_printed(by_test.loc[2, "var_error"], "0.00059047")


def test_vandyke_random_readers_random_cases(vd):
    a = vd.rrrc
    assert a.statistic_name == "F"
    assert_printed(a.statistic, "4.46")
    assert a.df1 == 1
    assert_printed(a.df2, "15.26")
    assert_printed(a.p_value, "0.0517")
    assert_printed(a.denominator, "0.00107626")  # OR-DBM output: error term
    d = a.differences.iloc[0]
    assert (d.test_a, d.test_b) == (1, 2)
    assert_printed(d.se, "0.02075")
    assert_printed(d.ci_low, "-0.08796")
    assert_printed(d.ci_high, "0.00036")
    assert_printed(d.statistic, "-2.11")  # OR-DBM output
    assert_printed(d.p_value, "0.0517")
    t1 = a.tests.iloc[0]
    assert_printed(t1.se, "0.03317360")
    assert_printed(t1.df, "12.74")
    assert_printed(t1.ci_low, "0.82522360")
    assert_printed(t1.ci_high, "0.96885048")
    t2 = a.tests.iloc[1]  # OR-DBM output
    assert_printed(t2.se, "0.02156637")
    assert_printed(t2.df, "12.71")
    assert_printed(t2.ci_low, "0.89413783")
    assert_printed(t2.ci_high, "0.98753689")


def test_vandyke_fixed_readers_random_cases(vd):
    a = vd.frrc
    assert a.statistic_name == "chi2" and a.df1 == 1 and a.df2 is None
    assert_printed(a.statistic, "5.47595")
    assert_printed(a.p_value, "0.0193")
    d = a.differences.iloc[0]
    assert_printed(d.se, "0.01872")
    assert_printed(d.ci_low, "-0.08049")
    assert_printed(d.ci_high, "-0.00711")
    # OR-DBM output: single-treatment intervals and per-reader differences.
    assert_printed(a.tests.iloc[0].se, "0.02428971")
    assert_printed(a.tests.iloc[0].ci_low, "0.84943008")
    assert_printed(a.tests.iloc[0].ci_high, "0.94464399")
    assert_printed(a.tests.iloc[1].se, "0.01677632")
    published = {  # reader: (difference, SE, p, CI low, CI high)
        1: ("-0.02818", "0.02551", "0.2693", "-0.07818", "0.02182"),
        2: ("-0.04654", "0.02630", "0.0768", "-0.09809", "0.00501"),
        3: ("-0.01787", "0.03121", "0.5668", "-0.07904", "0.04330"),
        4: ("-0.02625", "0.01729", "0.1290", "-0.06014", "0.00764"),
        5: ("-0.10016", "0.04406", "0.0230", "-0.18651", "-0.01381"),
    }
    rd = a.reader_differences.set_index("reader")
    for reader, values in published.items():
        row = rd.loc[reader]
        for col, printed in zip(("estimate", "se", "p_value", "ci_low", "ci_high"), values):
            assert_printed(row[col], printed)


def test_vandyke_random_readers_fixed_cases(vd):
    a = vd.rrfc
    assert_printed(a.statistic, "8.70")
    assert (a.df1, a.df2) == (1, 4)
    assert_printed(a.p_value, "0.0420")
    d = a.differences.iloc[0]
    assert_printed(d.ci_low, "-0.08502")
    assert_printed(d.ci_high, "-0.00258")
    assert_printed(d.se, "0.01485")  # OR-DBM output
    # OR-DBM output: single-treatment intervals on r - 1 df.
    assert_printed(a.tests.iloc[0].se, "0.02482994")
    assert_printed(a.tests.iloc[0].ci_low, "0.82809808")
    assert_printed(a.tests.iloc[1].ci_high, "0.98568536")
    assert list(a.tests["df"]) == [4, 4]


def test_vandyke_delong_covariance(vandyke):
    res = mrmc(vandyke, test="treatment", cov_method="delong")
    assert res.cov_method == "delong"
    assert_printed(res.rrrc.statistic, "4.484854")
    assert_printed(res.rrrc.df2, "15.06611")
    assert_printed(res.rrrc.p_value, "0.05123303")


# --------------------------------------------------------------------------- estimators
def test_jackknife_matches_bruteforce_leave_one_out(vandyke, vd):
    """The vectorised jackknife equals refitting every AUC without each case."""
    cases = np.sort(vandyke["case"].unique())
    groups = [(t, r) for t in (1, 2) for r in range(1, 6)]
    wide = vandyke.pivot_table(index="case", columns=["treatment", "reader"], values="rating")
    truth = vandyke.groupby("case")["truth"].first().loc[wide.index].to_numpy()
    loo = np.empty((cases.size, len(groups)))
    for k in range(cases.size):
        keep = np.arange(cases.size) != k
        for g, key in enumerate(groups):
            loo[k, g] = _auc_bruteforce(truth[keep], wide[key].to_numpy()[keep])
    dev = loo - loo.mean(axis=0)
    expected = (cases.size - 1) / cases.size * dev.T @ dev
    np.testing.assert_allclose(vd.covariance.to_numpy(), expected, rtol=1e-10, atol=1e-15)
    for key in groups:
        assert vd.aucs.set_index(["test", "reader"]).loc[key, "auc"] == pytest.approx(
            _auc_bruteforce(truth, wide[key].to_numpy()), abs=1e-12)


def test_clustered_jackknife_matches_bruteforce_leave_one_patient_out():
    rng = np.random.default_rng(11)
    df = _simulate(rng, n_cases=45, n_readers=3, n_tests=2, effect=0.5, n_clusters=17)
    res = mrmc(df, cluster="patient")
    assert res.n_clusters == 17
    wide = df.pivot_table(index="case", columns=["test", "reader"], values="rating")
    truth = df.groupby("case")["truth"].first().loc[wide.index].to_numpy()
    patient = df.groupby("case")["patient"].first().loc[wide.index].to_numpy()
    patients = np.unique(patient)
    loo = np.array([[_auc_bruteforce(truth[patient != p], wide[key].to_numpy()[patient != p])
                     for key in wide.columns] for p in patients])
    dev = loo - loo.mean(axis=0)
    expected = (patients.size - 1) / patients.size * dev.T @ dev
    np.testing.assert_allclose(res.covariance.to_numpy(), expected, rtol=1e-10, atol=1e-15)


def test_one_case_per_cluster_equals_unclustered(vandyke, vd):
    for method in ("jackknife", "delong"):
        plain = vd if method == "jackknife" else mrmc(vandyke, test="treatment",
                                                      cov_method=method)
        clustered = mrmc(vandyke.assign(patient=vandyke["case"] * 7), test="treatment",
                         cluster="patient", cov_method=method)
        np.testing.assert_allclose(clustered.covariance.to_numpy(),
                                   plain.covariance.to_numpy(), rtol=1e-12, atol=1e-16)
        assert clustered.rrrc.p_value == pytest.approx(plain.rrrc.p_value, rel=1e-10)


def test_clustering_changes_the_variance_when_patients_share_lesions(vandyke, vd):
    grouped = mrmc(vandyke.assign(patient=(vandyke["case"] - 1) // 3), test="treatment",
                   cluster="patient")
    assert grouped.n_clusters == 38
    assert grouped.aucs["auc"].tolist() == vd.aucs["auc"].tolist()
    assert not np.allclose(grouped.covariance.to_numpy(), vd.covariance.to_numpy())


def test_franken_smoke_and_consistency(franken):
    jk = mrmc(franken, test="treatment")
    dl = mrmc(franken, test="treatment", cov_method="delong")
    assert jk.tests == (1, 2) and len(jk.readers) == 4 and jk.n_cases == 100
    assert ((jk.aucs["auc"] > 0) & (jk.aucs["auc"] < 1)).all()
    np.testing.assert_array_equal(jk.aucs["auc"], dl.aucs["auc"])
    # Jackknife and DeLong estimate the same covariances (jackknife is the
    # slightly larger one, by O(1/n)).
    for name in ("var_error", "cov1", "cov2", "cov3"):
        a, b = getattr(jk.components, name), getattr(dl.components, name)
        assert a == pytest.approx(b, rel=0.05), name
    np.testing.assert_allclose(jk.covariance.to_numpy(), dl.covariance.to_numpy(),
                               rtol=0.1, atol=2e-5)
    for res in (jk, dl):
        for a in res.analyses():
            assert 0 <= a.p_value <= 1
            d = a.differences.iloc[0]
            assert d.ci_low < d.estimate < d.ci_high
            assert ((a.tests["ci_low"] >= 0) & (a.tests["ci_high"] <= 1)).all()


# --------------------------------------------------------------------------- design
def test_row_order_and_labels_do_not_matter(vandyke, vd):
    shuffled = vandyke.sample(frac=1.0, random_state=3).assign(
        reader=lambda d: "reader-" + d["reader"].astype(str),
        case=lambda d: "c" + d["case"].astype(str))
    res = mrmc(shuffled, test="treatment")
    assert res.rrrc.statistic == pytest.approx(vd.rrrc.statistic, rel=1e-12)
    np.testing.assert_allclose(res.covariance.to_numpy(), vd.covariance.to_numpy(),
                               rtol=1e-12)


def test_categorical_test_order_sets_the_sign(vandyke, vd):
    df = vandyke.assign(treatment=pd.Categorical(vandyke["treatment"], categories=[2, 1]))
    res = mrmc(df, test="treatment")
    assert res.tests == (2, 1)
    assert res.rrrc.differences.loc[0, "estimate"] == pytest.approx(
        -vd.rrrc.differences.loc[0, "estimate"])
    assert res.rrrc.p_value == pytest.approx(vd.rrrc.p_value, rel=1e-12)


def test_three_tests_global_f_and_all_pairs():
    rng = np.random.default_rng(5)
    df = _simulate(rng, n_cases=80, n_readers=5, n_tests=3, effect=0.4)
    res = mrmc(df)
    t, r = 3, 5
    assert res.rrrc.df1 == 2 and len(res.rrrc.differences) == 3
    assert [tuple(x) for x in res.rrrc.differences[["test_a", "test_b"]].to_numpy()] == [
        ("t0", "t1"), ("t0", "t2"), ("t1", "t2")]
    theta = res.aucs.pivot(index="test", columns="reader", values="auc").to_numpy()
    # Two-way ANOVA mean squares computed independently of the module.
    grand = theta.mean()
    ms_t = r * ((theta.mean(1) - grand) ** 2).sum() / (t - 1)
    inter = theta - theta.mean(1, keepdims=True) - theta.mean(0, keepdims=True) + grand
    ms_tr = (inter ** 2).sum() / ((t - 1) * (r - 1))
    c = res.components
    assert c.ms_t == pytest.approx(ms_t) and c.ms_tr == pytest.approx(ms_tr)
    den = ms_tr + r * max(c.cov2 - c.cov3, 0)
    assert res.rrrc.statistic == pytest.approx(ms_t / den)
    assert res.rrrc.df2 == pytest.approx(den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))))
    assert res.rrfc.df2 == (t - 1) * (r - 1)
    means = theta.mean(1)
    for row in res.rrrc.differences.itertuples():
        i, j = int(row.test_a[1]), int(row.test_b[1])
        assert row.estimate == pytest.approx(means[i] - means[j])
        assert row.se == pytest.approx(math.sqrt(2 / r * den))
    assert res.frrc.statistic == pytest.approx(
        (t - 1) * ms_t / (c.var_error - c.cov1 + (r - 1) * max(c.cov2 - c.cov3, 0)))
    assert len(res.frrc.reader_differences) == 3 * r


def test_rrrc_type_one_error_is_near_nominal():
    """Under the null (tests exchangeable), RRRC rejects at about alpha."""
    rng = np.random.default_rng(2024)
    n_sim = 150
    rejections = sum(
        mrmc(_simulate(rng, n_cases=50, n_readers=4, effect=0.0)).rrrc.p_value < 0.05
        for _ in range(n_sim))
    assert 1 <= rejections <= 18  # 0.7%–12%; expected ≈ 7.5 (Hillis df is ~nominal)


# --------------------------------------------------------------------------- model vs readers
def _model_and_readings(franken, rng, clusters=None):
    cases = franken.drop_duplicates("case")[["case", "truth"]].reset_index(drop=True)
    model = cases.assign(prob=1 / (1 + np.exp(-(1.2 * cases["truth"]
                                                + rng.normal(size=len(cases))))))
    if clusters:
        model["patient"] = model["case"] % clusters
    readings = franken.loc[franken["treatment"] == 1, ["reader", "case", "rating"]]
    return model, readings


def test_model_vs_readers_equals_mrmc_on_the_long_table(franken):
    model, readings = _model_and_readings(franken, np.random.default_rng(1), clusters=30)
    res = model_vs_readers(model, readings, cluster="patient")
    assert res.tests == ("model", "readers")
    readers = sorted(readings["reader"].unique())
    long = pd.concat([
        model.rename(columns={"prob": "rating"}).merge(
            pd.DataFrame({"reader": readers}), how="cross").assign(test="a_model"),
        readings.merge(model.drop(columns="prob"), on="case").assign(test="b_readers"),
    ])
    ref = mrmc(long, cluster="patient")
    assert res.rrrc.statistic == pytest.approx(ref.rrrc.statistic, rel=1e-12)
    np.testing.assert_allclose(res.covariance.to_numpy(), ref.covariance.to_numpy())
    model_aucs = res.aucs.loc[res.aucs["test"] == "model", "auc"]
    assert model_aucs.nunique() == 1
    assert model_aucs.iloc[0] == pytest.approx(
        _auc_bruteforce(model["truth"].to_numpy(), model["prob"].to_numpy()))
    d = res.rrrc.differences.iloc[0]
    assert (d.test_a, d.test_b) == ("model", "readers")
    assert d.estimate == pytest.approx(model_aucs.iloc[0] - res.aucs.loc[
        res.aucs["test"] == "readers", "auc"].mean())


def test_single_reader_frrc_is_the_paired_delong_test(franken):
    model, readings = _model_and_readings(franken, np.random.default_rng(2), clusters=25)
    one = readings[readings["reader"] == 2]
    res = model_vs_readers(model, one, cov_method="delong")
    assert res.rrrc is None and res.rrfc is None and len(res.readers) == 1
    merged = model.merge(one, on="case")
    ref = delong_test(merged["truth"], merged["prob"], merged["rating"])
    d = res.frrc.differences.iloc[0]
    assert d.estimate == pytest.approx(ref.diff, abs=1e-12)
    assert d.se == pytest.approx(ref.se, rel=1e-10)
    assert res.frrc.p_value == pytest.approx(ref.p_value, rel=1e-8)
    assert "only the fixed-readers analysis" in res.summary()

    clustered = model_vs_readers(model, one, cov_method="delong", cluster="patient")
    ref_c = clustered_auc_difference(merged["truth"], merged["prob"], merged["rating"],
                                     merged["patient"])
    assert clustered.frrc.differences.iloc[0].se == pytest.approx(ref_c.se, rel=1e-10)


def test_model_vs_readers_refuses_incomplete_cases(franken):
    model, readings = _model_and_readings(franken, np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"1 case\(s\) have a model score but no reading"):
        model_vs_readers(model, readings[readings["case"] != 5])
    with pytest.raises(ValueError, match="one row per case"):
        model_vs_readers(pd.concat([model, model.iloc[:1]]), readings)
    with pytest.raises(ValueError, match="no column.*'prob'"):
        model_vs_readers(model.drop(columns="prob"), readings)
    with pytest.raises(ValueError, match="fully crossed"):
        model_vs_readers(model, readings.drop(index=readings.index[0]))


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns="rating"), r"no column\(s\) 'rating'"),
        (lambda d: d.assign(truth=d["truth"] * 2), r"'truth' must be binary"),
        (lambda d: d.assign(rating=d["rating"].where(d.index != 3)), "finite numbers"),
        (lambda d: pd.concat([d, d.iloc[:1]]), "duplicated reader × test × case"),
        (lambda d: d.drop(index=[0, 1]), "fully crossed"),
        (lambda d: d[d["treatment"] == 1], "at least 2 levels"),
        (lambda d: d.assign(truth=np.where(d.index == 0, 1 - d["truth"], d["truth"])),
         "constant within each case"),
        (lambda d: d.assign(truth=1), "both classes"),
    ],
)
def test_bad_input_raises_clear_errors(vandyke, mutate, message):
    with pytest.raises(ValueError, match=message):
        mrmc(mutate(vandyke.copy()), test="treatment")


def test_bad_options(vandyke):
    with pytest.raises(ValueError, match="cov_method"):
        mrmc(vandyke, test="treatment", cov_method="bootstrap")
    with pytest.raises(ValueError, match="alpha"):
        mrmc(vandyke, test="treatment", alpha=1.5)
    with pytest.raises(TypeError, match="DataFrame"):
        mrmc(vandyke.to_numpy(), test="treatment")
    with pytest.raises(ValueError, match="jackknife needs positive and negative"):
        mrmc(vandyke.assign(patient=vandyke["truth"]), test="treatment", cluster="patient")


# --------------------------------------------------------------------------- output
def test_alpha_sets_interval_width(vandyke, vd):
    wide = mrmc(vandyke, test="treatment", alpha=0.01)
    d95, d99 = vd.rrrc.differences.iloc[0], wide.rrrc.differences.iloc[0]
    assert d99.ci_high - d99.ci_low > d95.ci_high - d95.ci_low
    assert d99.p_value == d95.p_value


def test_to_dict_is_strict_json_and_summary_is_readable(vd, franken):
    payload = json.loads(json.dumps(vd.to_dict(), allow_nan=False))
    assert payload["rrrc"]["statistic"] == pytest.approx(vd.rrrc.statistic)
    assert payload["frrc"]["df2"] is None
    assert len(payload["aucs"]) == 10 and len(payload["covariance"]["matrix"]) == 10
    assert payload["covariance"]["labels"][0] == [1, 1]
    text = vd.summary()
    for snippet in ("0.91964573", "F = 4.45632", "15.2597", "0.03317360", "chi2 = 5.47595",
                    "F = 8.704", "0.00034661"):
        assert snippet in text
    assert str(vd) == text
    model, readings = _model_and_readings(franken, np.random.default_rng(4))
    single = model_vs_readers(model, readings[readings["reader"] == 1])
    json.dumps(single.to_dict(), allow_nan=False)  # NaN components become null


def test_huge_hillis_df_carries_a_note():
    """Readers who differ by one rating: the reader x test variance estimate is ~0 and Hillis' df
    explodes; the result says why (and the summary prints it) instead of a bare number."""
    rng = np.random.default_rng(0)
    n = 60
    truth = rng.integers(0, 2, n)
    cases = pd.DataFrame({"case": np.arange(n), "truth": truth,
                          "prob": np.clip(0.5 + 0.3 * (truth - 0.5) + rng.normal(0, 0.2, n), 0, 1)})
    base = np.clip(np.round(3 + 1.5 * (truth - 0.5) + rng.normal(0, 1, n)), 1, 5)
    other = base.copy()
    other[3] = min(5, other[3] + 1)
    long = pd.concat([pd.DataFrame({"case": np.arange(n), "reader": r, "rating": s})
                      for r, s in (("R1", base), ("R2", other), ("R3", base))])
    res = model_vs_readers(cases, long, case="case", truth="truth", prob="prob", rating="rating")
    assert res.rrrc.df2 > HILLIS_DF_NOTE_ABOVE
    assert "reader x test interaction variance" in res.rrrc.note and "normal" in res.rrrc.note
    assert abs(reader_by_test_variance(res.components)) < 1e-5
    assert res.to_dict()["rrrc"]["note"] == res.rrrc.note and f"Note: {res.rrrc.note}" in res.summary()


def test_ordinary_hillis_df_has_no_note(vd):
    assert vd.rrrc.df2 < 100 and vd.rrrc.note is None and "Note:" not in vd.summary()
