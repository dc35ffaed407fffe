"""Obuchowski–Rockette variance components and the three analyses with Hillis' df.

From the (tests × readers) AUC matrix and the covariance of its entries: the OR
covariances Cov1–Cov3 and mean squares, then the RRRC (Hillis denominator df), FRRC
(chi-square) and RRFC (conventional F) tests, pairwise test differences and single-test
intervals, following MRMCaov's conventions (see :mod:`dlm_ml.stats.mrmc`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._mrmc_results import MRMCAnalysis, ORComponents

__all__: list[str] = []  # private module: dlm_ml.stats.mrmc is the public home

#: Hillis' RRRC denominator df above which the result carries a note: far beyond any sample
#: size of a reader study, such a df only says that the reader x test variance estimate is ~0.
HILLIS_DF_NOTE_ABOVE = 1000.0

_ANALYSES = {
    "rrrc": "random readers, random cases",
    "frrc": "fixed readers, random cases",
    "rrfc": "random readers, fixed cases",
}


@dataclass(frozen=True)
class _PerTest:
    var: np.ndarray  # (t,) mean AUC variance within test
    cov2: np.ndarray  # (t,) mean covariance of different readers within test
    ms_r: np.ndarray  # (t,) reader mean square within test


def _or_components(theta, cov, t, r, cov_method):
    test_idx = np.repeat(np.arange(t), r)
    reader_idx = np.tile(np.arange(r), t)
    same_t = test_idx[:, None] == test_idx[None, :]
    same_r = reader_idx[:, None] == reader_idx[None, :]

    def mean_of(mask):
        return float(cov[mask].mean()) if mask.any() else math.nan

    var_error = float(np.diag(cov).mean())
    cov1 = mean_of(~same_t & same_r)
    cov2 = mean_of(same_t & ~same_r)
    cov3 = mean_of(~same_t & ~same_r)

    mean_t = theta.mean(axis=1)
    mean_r = theta.mean(axis=0)
    grand = theta.mean()
    ms_t = r * float(np.sum((mean_t - grand) ** 2)) / (t - 1)
    if r >= 2:
        ms_r = t * float(np.sum((mean_r - grand) ** 2)) / (r - 1)
        resid = theta - mean_t[:, None] - mean_r[None, :] + grand
        ms_tr = float(np.sum(resid ** 2)) / ((t - 1) * (r - 1))
        ms_r_i = np.sum((theta - mean_t[:, None]) ** 2, axis=1) / (r - 1)
    else:
        ms_r = ms_tr = math.nan
        ms_r_i = np.full(t, math.nan)

    blocks = cov.reshape(t, r, t, r)
    within = blocks[np.arange(t), :, np.arange(t), :]  # (t, r, r)
    var_i = np.einsum("ijj->i", within) / r
    if r >= 2:
        cov2_i = (within.sum(axis=(1, 2)) - var_i * r) / (r * (r - 1))
    else:
        cov2_i = np.full(t, math.nan)
    comps = ORComponents(var_error=var_error, cov1=cov1, cov2=cov2, cov3=cov3,
                         ms_t=ms_t, ms_r=ms_r, ms_tr=ms_tr, cov_method=cov_method)
    return comps, _PerTest(var=var_i, cov2=cov2_i, ms_r=ms_r_i)


def _pairs(levels):
    return list(itertools.combinations(range(len(levels)), 2))


def _t_or_normal_sf(x: float, df: float) -> float:
    if math.isnan(x) or math.isnan(df):
        return math.nan
    return float(stats.norm.sf(x) if math.isinf(df) else stats.t.sf(x, df))


def _t_or_normal_ppf(q: float, df: float) -> float:
    if math.isnan(df):
        return math.nan
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _hillis_df(den: float, ms: float, df_ms: float) -> float:
    """Satterthwaite-type df of Hillis (2007): den² / (ms² / df_ms)."""
    if math.isnan(den) or math.isnan(ms) or den <= 0:
        return math.nan
    if ms == 0:
        return math.inf
    return den ** 2 / (ms ** 2 / df_ms)


def _difference_table(theta, tests, se, df, alpha):
    mean_t = theta.mean(axis=1)
    rows = []
    q = _t_or_normal_ppf(1 - alpha / 2, df)
    for i, j in _pairs(tests):
        est = float(mean_t[i] - mean_t[j])
        stat = _ratio(est, se) if se > 0 else math.nan
        p = 2 * _t_or_normal_sf(abs(stat), df) if not math.isnan(stat) else math.nan
        rows.append({
            "test_a": tests[i], "test_b": tests[j], "estimate": est, "se": se,
            "df": df, "statistic": stat, "p_value": p,
            "ci_low": est - q * se, "ci_high": est + q * se,
        })
    return pd.DataFrame(rows, columns=["test_a", "test_b", "estimate", "se", "df",
                                       "statistic", "p_value", "ci_low", "ci_high"])


def _test_table(theta, tests, se, df, alpha):
    mean_t = theta.mean(axis=1)
    q = np.array([_t_or_normal_ppf(1 - alpha / 2, d) for d in df])
    return pd.DataFrame({
        "test": pd.Series(tests, dtype=object),
        "auc": mean_t,
        "se": se,
        "df": df,
        # AUCs live in [0, 1]; MRMCaov clips the single-test intervals likewise.
        "ci_low": np.clip(mean_t - q * se, 0.0, 1.0),
        "ci_high": np.clip(mean_t + q * se, 0.0, 1.0),
    })


def _global_f(stat, df1, df2):
    if math.isnan(stat) or math.isnan(df2):
        return math.nan
    if math.isinf(df2):  # F(df1, ∞) · df1 is chi-square(df1)
        return float(stats.chi2.sf(stat * df1, df1))
    return float(stats.f.sf(stat, df1, df2))


def reader_by_test_variance(comps: ORComponents) -> float:
    """OR estimate of the reader × test interaction variance, ``σ²_TR = MS(T*R) − (Var − Cov1 − Cov2 + Cov3)``
    (Hillis 2007); may be negative, which the RRRC denominator truncates."""
    return comps.ms_tr - (comps.var_error - comps.cov1 - comps.cov2 + comps.cov3)


def _hillis_df_note(df2: float, comps: ORComponents) -> str | None:
    """Why Hillis' df is huge (or infinite), in words; None when it is not."""
    if math.isnan(df2) or df2 <= HILLIS_DF_NOTE_ABOVE:
        return None
    var_tr = reader_by_test_variance(comps)
    size = "infinite" if math.isinf(df2) else f"{df2:.0f}"
    sign = "negative (truncated to 0 in the test)" if var_tr < 0 else "about 0"
    return (f"Hillis denominator df is {size}: the reader x test interaction variance estimate "
            f"({var_tr:.3g}) is {sign}, i.e. the readers' differences from the other test hardly vary "
            "beyond what case sampling explains, so the F test approaches its normal (chi-square) "
            "reference; the df value itself carries no further information.")


def _rrrc(theta, comps, per_test, design, alpha):
    t, r = theta.shape
    den = comps.ms_tr + r * max(comps.cov2 - comps.cov3, 0.0)
    df2 = _hillis_df(den, comps.ms_tr, (t - 1) * (r - 1))
    stat = _ratio(comps.ms_t, den)
    se_diff = math.sqrt(2.0 / r * den) if den >= 0 else math.nan
    test_den = per_test.ms_r + r * np.maximum(per_test.cov2, 0.0)
    test_se = np.sqrt(test_den / r)
    test_df = np.array([_hillis_df(d, ms, r - 1) for d, ms in zip(test_den, per_test.ms_r)])
    return MRMCAnalysis(
        name="rrrc", description=_ANALYSES["rrrc"], statistic_name="F",
        statistic=stat, df1=float(t - 1), df2=df2,
        p_value=_global_f(stat, t - 1, df2), denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, df2, alpha),
        tests=_test_table(theta, design.tests, test_se, test_df, alpha),
        note=_hillis_df_note(df2, comps),
    )


def _frrc(theta, cov, comps, per_test, design, alpha):
    t, r = theta.shape
    # Truncated as in Hillis' OR-DBM MRMC (MRMCaov leaves Cov2 - Cov3 as is);
    # the two agree whenever Cov2 >= Cov3.
    between = (r - 1) * max(comps.cov2 - comps.cov3, 0.0) if r >= 2 else 0.0
    den = comps.var_error - comps.cov1 + between
    stat = _ratio((t - 1) * comps.ms_t, den)
    p = float(stats.chi2.sf(stat, t - 1)) if not math.isnan(stat) else math.nan
    se_diff = math.sqrt(2.0 / r * den) if den >= 0 else math.nan
    cov2_term = (r - 1) * np.maximum(per_test.cov2, 0.0) if r >= 2 else 0.0
    test_se = np.sqrt((per_test.var + cov2_term) / r)

    # Per reader: the exact variance of that reader's difference from the AUC
    # covariance matrix (equal to MRMCaov's 2(Var_j - Cov1_j) when t = 2).
    q = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for j, rd in enumerate(design.readers):
        for a, b in _pairs(design.tests):
            ka, kb = a * r + j, b * r + j
            est = float(theta[a, j] - theta[b, j])
            var = cov[ka, ka] + cov[kb, kb] - 2 * cov[ka, kb]
            se = math.sqrt(var) if var > 0 else 0.0
            z = est / se if se > 0 else math.nan
            rows.append({
                "reader": rd, "test_a": design.tests[a], "test_b": design.tests[b],
                "estimate": est, "se": se, "statistic": z,
                "p_value": float(2 * stats.norm.sf(abs(z))) if se > 0 else math.nan,
                "ci_low": est - q * se, "ci_high": est + q * se,
            })
    reader_diffs = pd.DataFrame(rows, columns=["reader", "test_a", "test_b", "estimate",
                                               "se", "statistic", "p_value", "ci_low",
                                               "ci_high"])
    return MRMCAnalysis(
        name="frrc", description=_ANALYSES["frrc"], statistic_name="chi2",
        statistic=stat, df1=float(t - 1), df2=None, p_value=p, denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, math.inf, alpha),
        tests=_test_table(theta, design.tests, test_se, np.full(t, math.inf), alpha),
        reader_differences=reader_diffs,
    )


def _rrfc(theta, comps, per_test, design, alpha):
    t, r = theta.shape
    df2 = float((t - 1) * (r - 1))
    den = comps.ms_tr
    stat = _ratio(comps.ms_t, den)
    se_diff = math.sqrt(2.0 / r * den)
    return MRMCAnalysis(
        name="rrfc", description=_ANALYSES["rrfc"], statistic_name="F",
        statistic=stat, df1=float(t - 1), df2=df2,
        p_value=_global_f(stat, t - 1, df2), denominator=den,
        differences=_difference_table(theta, design.tests, se_diff, df2, alpha),
        tests=_test_table(theta, design.tests, np.sqrt(per_test.ms_r / r),
                          np.full(t, float(r - 1)), alpha),
    )
