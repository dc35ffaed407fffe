"""Multi-reader multi-case (MRMC) ROC analysis.

Obuchowski–Rockette (OR) analysis of empirical AUCs with the denominator degrees
of freedom of Hillis (2007, 2008), for a fully crossed design: every reader reads
every case under every test (modality). The three conventional analyses are
reported side by side:

* **random readers, random cases** (RRRC): generalises to readers and cases like
  those studied; Hillis' F test and ``t`` intervals;
* **fixed readers, random cases** (FRRC): generalises to cases only; chi-square
  test and normal intervals;
* **random readers, fixed cases** (RRFC): generalises to readers only;
  conventional F test on the test × reader interaction.

AUCs are empirical (trapezoidal, ties count one half). The OR error covariances
come from a jackknife over cases or from DeLong's structural components; when a
``cluster`` column is given (lesions nested in patients), the jackknife leaves
out one patient at a time and the DeLong variant becomes Obuchowski's (1997)
clustered estimator, so the patient is the unit of independence.

A model is compared with radiologists by entering it as one more "test" whose
rating is its probability, identical for every reader: see
:func:`model_vs_readers`.

Every public name is importable from this module; the work is split by step:
``_mrmc_design`` checks the table and lays it out as a (tests, readers, cases) array,
``_mrmc_covariance`` estimates the covariance of the reader × test AUCs,
``_mrmc_analysis`` computes the OR components and the three analyses, and
``_mrmc_results`` holds the result objects and their report.

References
----------
Obuchowski NA, Rockette HE (1995). Hypothesis testing of diagnostic accuracy for
multiple readers and multiple tests. Commun Stat Simul Comput 24:285–308.
Hillis SL (2007). A comparison of denominator degrees of freedom methods for
multiple observer ROC analysis. Stat Med 26:596–619.
Hillis SL, Berbaum KS, Metz CE (2008). Recent developments in the
Dorfman-Berbaum-Metz procedure for multireader ROC study analysis. Acad Radiol
15:647–661.
Obuchowski NA (1997). Nonparametric analysis of clustered ROC curve data.
Biometrics 53:567–578.
Smith BJ, Hillis SL (2020). Multi-reader multi-case analysis of variance
software for diagnostic performance comparison of imaging modalities. Proc SPIE
11316 (R package MRMCaov, whose conventions are followed here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._mrmc_analysis import HILLIS_DF_NOTE_ABOVE, _frrc, _or_components, _rrfc, _rrrc, reader_by_test_variance
from ._mrmc_covariance import _jackknife_cov, _structural_components
from ._mrmc_design import _design, _examples, _require_columns
from ._mrmc_results import MRMCAnalysis, MRMCResult, ORComponents
from ._validation import check_alpha, check_choice
from .clustered import clustered_auc_covariance
from .roc import delong_covariance

__all__ = [
    "COV_METHODS",
    "MRMCAnalysis",
    "MRMCResult",
    "ORComponents",
    "HILLIS_DF_NOTE_ABOVE",
    "model_vs_readers",
    "mrmc",
    "reader_by_test_variance",
]

COV_METHODS = ("jackknife", "delong")


def mrmc(
    data: pd.DataFrame,
    *,
    reader: str = "reader",
    test: str = "test",
    case: str = "case",
    truth: str = "truth",
    rating: str = "rating",
    cluster: str | None = None,
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> MRMCResult:
    """Obuchowski–Rockette MRMC analysis of empirical AUCs with Hillis df.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per reader × test × case, fully crossed.
    reader, test, case, truth, rating : str
        Column names. ``truth`` is 0/1 and constant within a case; ``rating``
        is numeric, higher meaning truth 1 more likely. The order of tests is
        the category order when ``test`` is an (ordered or not) categorical
        column, else the sorted order; differences are earlier minus later.
    cluster : str, optional
        Column of cluster (patient) ids, constant within a case. Given, the
        jackknife leaves out one cluster at a time and the DeLong covariance
        becomes Obuchowski's clustered estimator.
    cov_method : {"jackknife", "delong"}
        Estimator of the covariance matrix of the reader × test AUCs.
    alpha : float
        Confidence intervals have coverage ``1 - alpha``.

    Returns
    -------
    MRMCResult

    Raises
    ------
    ValueError
        On a missing column, non-binary or inconsistent truth, missing or
        non-numeric ratings, duplicate or missing reader × test × case cells,
        fewer than two tests, or too few positive/negative cases (clusters).

    Notes
    -----
    RRRC: ``F = MS(T) / [MS(T*R) + r·max(Cov2 - Cov3, 0)]`` with df
    ``(t - 1, ddf_H)``, ``ddf_H = [MS(T*R) + r·max(Cov2 - Cov3, 0)]² /
    [MS(T*R)² / ((t-1)(r-1))]``; a test's own mean AUC has SE
    ``sqrt(MS(R)_i / r + max(Cov2_i, 0))`` with its own Hillis df. FRRC:
    ``χ² = (t-1) MS(T) / [Var - Cov1 + (r-1)·max(Cov2 - Cov3, 0)]`` (truncated
    as in OR-DBM MRMC; MRMCaov does not truncate here). RRFC:
    ``F = MS(T) / MS(T*R)`` on ``(t-1, (t-1)(r-1))`` df. Pairwise differences
    use the pooled denominators, as MRMCaov and OR-DBM MRMC do.

    Examples
    --------
    >>> res = mrmc(df, test="treatment")                       # doctest: +SKIP
    >>> print(res.summary())                                   # doctest: +SKIP
    >>> res.rrrc.differences                                   # doctest: +SKIP
    """
    alpha = check_alpha(alpha)
    cov_method = check_choice(cov_method, "cov_method", COV_METHODS)
    design = _design(data, reader=reader, test=test, case=case, truth=truth,
                     rating=rating, cluster=cluster)
    t, r = len(design.tests), len(design.readers)
    scores = design.ratings.reshape(t * r, -1)

    v10, v01, auc = _structural_components(scores, design.truth)
    groups = design.clusters
    n_groups = int(groups.max()) + 1
    pos = design.truth == 1
    if cov_method == "jackknife":
        cov = _jackknife_cov(scores, pos, v10, v01, auc, groups, n_groups)
    elif cluster is None:
        cov = delong_covariance(design.truth, scores)
    else:
        # Obuchowski (1997): DeLong's placement values summed within patients.
        cov = clustered_auc_covariance(design.truth, scores, groups)

    theta = auc.reshape(t, r)
    comps, per_test = _or_components(theta, cov, t, r, cov_method)

    index = pd.MultiIndex.from_product([design.tests, design.readers],
                                       names=[test, reader])
    covariance = pd.DataFrame(cov, index=index, columns=index)
    aucs = pd.DataFrame({
        "test": np.repeat(np.array(design.tests, dtype=object), r),
        "reader": np.tile(np.array(design.readers, dtype=object), t),
        "auc": auc,
        "se": np.sqrt(np.clip(np.diag(cov), 0.0, None)),
    })

    frrc = _frrc(theta, cov, comps, per_test, design, alpha)
    rrrc = _rrrc(theta, comps, per_test, design, alpha) if r >= 2 else None
    rrfc = _rrfc(theta, comps, per_test, design, alpha) if r >= 2 else None

    return MRMCResult(
        aucs=aucs,
        components=comps,
        rrrc=rrrc,
        frrc=frrc,
        rrfc=rrfc,
        components_by_test=pd.DataFrame({
            "test": pd.Series(design.tests, dtype=object),
            "var_error": per_test.var,
            "cov2": per_test.cov2,
            "ms_r": per_test.ms_r,
        }),
        covariance=covariance,
        tests=tuple(design.tests),
        readers=tuple(design.readers),
        n_cases=int(design.truth.size),
        n_positive=int(pos.sum()),
        n_negative=int((~pos).sum()),
        n_clusters=n_groups if cluster is not None else None,
        cov_method=cov_method,
        alpha=alpha,
    )


def model_vs_readers(
    model_scores: pd.DataFrame,
    readings: pd.DataFrame,
    *,
    case: str = "case",
    truth: str = "truth",
    prob: str = "prob",
    reader: str = "reader",
    rating: str = "rating",
    cluster: str | None = None,
    model_label: str = "model",
    readers_label: str = "readers",
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> MRMCResult:
    """Compare a model with a panel of readers by OR MRMC analysis.

    The model enters as a test whose rating is its probability, identical for
    every reader, so its reader × test AUCs are all equal and its variance
    enters through the case covariances only (Cov2 of the model equals its
    AUC variance). Differences are reported as model minus readers.

    Parameters
    ----------
    model_scores : pandas.DataFrame
        One row per case with columns ``case``, ``truth``, ``prob`` and, when
        ``cluster`` is given, the cluster (patient) id.
    readings : pandas.DataFrame
        One row per reader × case with columns ``reader``, ``case``,
        ``rating``; every reader must read every case of ``model_scores``.
    case, truth, prob, reader, rating, cluster : str
        Column names.
    model_label, readers_label : str
        Names of the two tests in the result.
    cov_method, alpha
        As in :func:`mrmc`.

    Returns
    -------
    MRMCResult
        With ``tests == (model_label, readers_label)``.

    Raises
    ------
    ValueError
        On missing columns, duplicated cases or readings, or cases present in
        one table and not the other (the OR analysis needs a complete design).
    """
    if not isinstance(model_scores, pd.DataFrame):
        raise TypeError("`model_scores` must be a pandas DataFrame.")
    if not isinstance(readings, pd.DataFrame):
        raise TypeError("`readings` must be a pandas DataFrame.")
    if model_label == readers_label:
        raise ValueError("`model_label` and `readers_label` must differ.")
    model_cols = [case, truth, prob] + ([cluster] if cluster is not None else [])
    _require_columns(model_scores, model_cols, "model_scores")
    _require_columns(readings, [reader, case, rating], "readings")

    dup = model_scores[case].duplicated()
    if dup.any():
        raise ValueError(
            f"`model_scores` must have one row per case; {int(dup.sum())} duplicated "
            f"value(s) in column '{case}', e.g. {model_scores.loc[dup, case].iloc[0]!r}."
        )
    model_cases = pd.Index(model_scores[case].unique())
    read_cases = pd.Index(readings[case].unique())
    unread = model_cases.difference(read_cases)
    unscored = read_cases.difference(model_cases)
    if len(unread) or len(unscored):
        raise ValueError(
            "MRMC needs the same cases in `model_scores` and `readings`: "
            f"{len(unread)} case(s) have a model score but no reading "
            f"{_examples(unread)}, {len(unscored)} case(s) have readings but no "
            f"model score {_examples(unscored)}."
        )

    base = model_scores[model_cols].rename(columns={case: "case", truth: "truth"})
    if cluster is not None:
        base = base.rename(columns={cluster: "cluster"})
    readers_df = readings[[reader, case, rating]].rename(
        columns={reader: "reader", case: "case", rating: "rating"})
    readers_df = readers_df.merge(base.drop(columns=[prob]), on="case", how="left")
    reader_ids = pd.unique(readings[reader])
    model_df = base.rename(columns={prob: "rating"}).merge(
        pd.DataFrame({"reader": reader_ids}), how="cross")
    long = pd.concat(
        [model_df.assign(test=model_label), readers_df.assign(test=readers_label)],
        ignore_index=True,
    )
    long["test"] = pd.Categorical(long["test"], categories=[model_label, readers_label])
    return mrmc(long, reader="reader", test="test", case="case", truth="truth",
                rating="rating", cluster="cluster" if cluster is not None else None,
                cov_method=cov_method, alpha=alpha)
