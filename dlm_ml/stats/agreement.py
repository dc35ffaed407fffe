"""Agreement between readers: Cohen's (weighted) kappa and Fleiss' kappa.

* :func:`cohen_kappa` — two raters, optionally weighted (linear or quadratic
  agreement weights for ordinal scores), with the large-sample standard errors
  of Fleiss, Cohen & Everitt (1969): the non-null SE gives the confidence
  interval, the null SE the test of ``kappa = 0``. This matches SAS
  ``PROC FREQ / AGREE`` (ASE) and R ``irr::kappa2`` (z test).
* :func:`fleiss_kappa` — any fixed number of raters per subject (Fleiss 1971),
  with the null SE of Fleiss, Nee & Landis (1979) for the test of ``kappa = 0``
  (as R ``irr::kappam.fleiss``) and a delete-one-subject jackknife SE for the
  confidence interval (the null SE is only valid at ``kappa = 0`` and is not a
  basis for an interval).

References
----------
Cohen J (1960). A coefficient of agreement for nominal scales. Educ Psychol Meas 20:37–46.
Cohen J (1968). Weighted kappa. Psychol Bull 70:213–220.
Fleiss JL, Cohen J, Everitt BS (1969). Large sample standard errors of kappa and
weighted kappa. Psychol Bull 72:323–327.
Fleiss JL (1971). Measuring nominal scale agreement among many raters. Psychol
Bull 76:378–382.
Fleiss JL, Nee JCM, Landis JR (1979). Large sample variance of kappa in the case
of different sets of raters. Psychol Bull 86:974–977.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._output import fmt_num, fmt_p, to_plain
from ._validation import check_alpha, check_choice

__all__ = ["CohenKappa", "FleissKappa", "InferredCategoriesWarning", "cohen_kappa", "fleiss_kappa"]

WEIGHTS = ("linear", "quadratic")


class InferredCategoriesWarning(UserWarning):
    """A weighted kappa computed on the categories observed in the ratings.

    ``categories`` holds the inferred categories, so that a caller can restate them
    in its own terms (e.g. a command-line option).
    """

    def __init__(self, message: str, categories: tuple):
        super().__init__(message)
        self.categories = categories


@dataclass(frozen=True, eq=False)  # holds frames/arrays: compare fields, not objects
class CohenKappa:
    """Cohen's kappa of two raters.

    Attributes
    ----------
    kappa : float
        Cohen's kappa (weighted when ``weights`` is set).
    se : float
        Large-sample SE (Fleiss, Cohen & Everitt 1969), not assuming kappa = 0.
    ci_low, ci_high : float
        ``kappa ± z_{1-alpha/2} · se`` (not clipped).
    se_null : float
        SE under H0: kappa = 0.
    z : float
        ``kappa / se_null``.
    p_value : float
        Two-sided p-value of H0: kappa = 0.
    observed_agreement, expected_agreement : float
        (Weighted) proportion of agreement observed and expected by chance.
    n : int
        Number of subjects rated by both raters.
    categories : tuple
        Category order used for the table and the weights.
    table : numpy.ndarray
        k × k counts, rows rater ``a``, columns rater ``b``.
    weights : str or None
        ``None`` (unweighted), ``"linear"`` or ``"quadratic"``.
    alpha : float
    """

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    se_null: float
    z: float
    p_value: float
    observed_agreement: float
    expected_agreement: float
    n: int
    categories: tuple
    table: np.ndarray = field(repr=False)
    weights: str | None
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN becomes ``None``)."""
        return {k: to_plain(getattr(self, k)) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        """Readable fixed-width report."""
        kind = "unweighted" if self.weights is None else f"{self.weights} weights"
        pct = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"Cohen's kappa ({kind}), n = {self.n}, {len(self.categories)} categories",
            f"  kappa                {fmt_num(self.kappa)}",
            f"  SE (FCE 1969)        {fmt_num(self.se)}",
            f"  {pct} CI               ({fmt_num(self.ci_low)}, {fmt_num(self.ci_high)})",
            f"  SE under kappa = 0   {fmt_num(self.se_null)}",
            f"  z                    {fmt_num(self.z, '.4f')}",
            f"  p (two-sided)        {fmt_p(self.p_value)}",
            f"  observed agreement   {fmt_num(self.observed_agreement)}",
            f"  chance agreement     {fmt_num(self.expected_agreement)}",
        ]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, eq=False)  # holds frames/arrays: compare fields, not objects
class FleissKappa:
    """Fleiss' kappa of a fixed number of raters per subject.

    Attributes
    ----------
    kappa : float
        Fleiss' (1971) kappa.
    se : float
        Delete-one-subject jackknife SE (used for the interval).
    ci_low, ci_high : float
        ``kappa ± z_{1-alpha/2} · se`` (not clipped).
    se_null : float
        SE under H0: kappa = 0 (Fleiss, Nee & Landis 1979).
    z : float
        ``kappa / se_null``.
    p_value : float
        Two-sided p-value of H0: kappa = 0.
    observed_agreement : float
        Mean proportion of agreeing rater pairs per subject (P-bar).
    expected_agreement : float
        Chance agreement ``Σ p_j²`` (P-bar_e).
    n_subjects, n_raters : int
        Subjects, and ratings per subject.
    categories : tuple
    per_category : pandas.DataFrame
        ``category, proportion, kappa, se_null, z, p_value``: agreement on
        each category against the rest (Fleiss 1971).
    alpha : float
    """

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    se_null: float
    z: float
    p_value: float
    observed_agreement: float
    expected_agreement: float
    n_subjects: int
    n_raters: int
    categories: tuple
    per_category: pd.DataFrame = field(repr=False)
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN becomes ``None``)."""
        return {k: to_plain(getattr(self, k)) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        """Readable fixed-width report."""
        pct = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"Fleiss' kappa, {self.n_subjects} subjects x {self.n_raters} raters, "
            f"{len(self.categories)} categories",
            f"  kappa                {fmt_num(self.kappa)}",
            f"  SE (jackknife)       {fmt_num(self.se)}",
            f"  {pct} CI               ({fmt_num(self.ci_low)}, {fmt_num(self.ci_high)})",
            f"  SE under kappa = 0   {fmt_num(self.se_null)}  (Fleiss, Nee & Landis 1979)",
            f"  z                    {fmt_num(self.z, '.4f')}",
            f"  p (two-sided)        {fmt_p(self.p_value)}",
            "  per category:",
            "    category  proportion     kappa        z         p",
        ]
        for row in self.per_category.itertuples():
            lines.append(f"    {str(row.category):>8}  {row.proportion:10.4f}  "
                         f"{fmt_num(row.kappa, '8.4f')}  {fmt_num(row.z, '7.3f')}  {fmt_p(row.p_value):>8}")
        return "\n".join(lines) + "\n"


def _two_sided(z: float) -> float:
    return float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _sorted_levels(values: Sequence) -> list:
    uniq = list(pd.unique(pd.Series(list(values), dtype=object)))
    try:
        return sorted(uniq)
    except TypeError:  # unorderable mix of labels: keep first appearance
        return uniq


def _check_categories(observed: Sequence, categories: Sequence | None, name: str) -> list:
    if categories is None:
        cats = _sorted_levels(observed)
    else:
        cats = list(categories)
        if len(set(cats)) != len(cats):
            raise ValueError("`categories` contains duplicates.")
        unknown = sorted({v for v in observed if v not in set(cats)}, key=str)
        if unknown:
            raise ValueError(
                f"{name} holds value(s) not in `categories`: {unknown[:5]}; "
                f"categories are {cats}."
            )
    if len(cats) < 2:
        raise ValueError(
            f"Kappa needs at least 2 categories; {name} only has {cats}. Pass "
            "`categories` to state the possible ratings."
        )
    return cats


def _values(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty.")
    missing = pd.isna(arr)
    if missing.any():
        raise ValueError(
            f"`{name}` has {int(missing.sum())} missing rating(s) (first at index "
            f"{int(np.flatnonzero(missing)[0])}); drop the subjects not rated by both."
        )
    # numpy scalars compare equal to Python ones but keep labels tidy in output
    return np.array([v.item() if isinstance(v, np.generic) else v for v in arr], dtype=object)


def _label_kind(value: Any) -> str:
    """Real numbers (int, float, bool) compare equal across types (1 == 1.0); others by type."""
    return "number" if isinstance(value, numbers.Real) else type(value).__name__


def _check_same_label_types(va: np.ndarray, vb: np.ndarray) -> None:
    """Refuse raters whose labels are of different types ("1" never equals 1: kappa would be 0)."""
    examples_a = {_label_kind(v): v for v in reversed(va)}  # kind -> its first value
    examples_b = {_label_kind(v): v for v in reversed(vb)}
    if examples_a.keys() == examples_b.keys():
        return

    def describe(examples: dict, other: dict) -> str:
        only = [v for kind, v in examples.items() if kind not in other] or list(examples.values())
        return ", ".join(f"{type(v).__name__} (e.g. {v!r})" for v in only)

    raise ValueError(
        f"The raters' labels are of different types: `a` has {describe(examples_a, examples_b)}, "
        f"`b` has {describe(examples_b, examples_a)}; a label of one type never equals one of "
        "another (\"1\" is not 1), so convert both raters' ratings to one type."
    )


def cohen_kappa(
    a,
    b,
    *,
    weights: str | None = None,
    alpha: float = 0.05,
    categories: Sequence | None = None,
) -> CohenKappa:
    """Cohen's kappa of two raters with large-sample SE and confidence interval.

    Parameters
    ----------
    a, b : array-like, shape (n,)
        Ratings of the same subjects by two raters (any hashable labels).
    weights : {None, "linear", "quadratic"}
        Agreement weights for ordinal ratings, ``1 - |i-j|/(k-1)`` or
        ``1 - (i-j)²/(k-1)²`` over category positions ``i, j``; ``None`` for
        unweighted kappa. Quadratic-weighted kappa approximates the intraclass
        correlation.
    alpha : float
        Confidence intervals have coverage ``1 - alpha``.
    categories : sequence, optional
        All possible ratings in order. Weighted kappa depends on the positions
        of the categories, so name unused intermediate categories here (e.g. a
        score of 3 nobody gave on a 1–5 scale). Default: the sorted observed
        values; a weighted kappa then emits an :class:`InferredCategoriesWarning`.

    Returns
    -------
    CohenKappa

    Raises
    ------
    ValueError
        When the two raters' labels are of different types (e.g. ``"1"`` against
        ``1``; numbers of int and float type are one type), or a rating is missing
        or not in ``categories``.

    Notes
    -----
    With ``p_ij`` the table of proportions, ``w_ij`` the weights and
    ``w̄_i. = Σ_j p_.j w_ij``, ``w̄_.j = Σ_i p_i. w_ij`` (Fleiss et al. 1969)::

        Var(κ)  = [Σ p_ij (w_ij − (w̄_i. + w̄_.j)(1 − κ))² − (κ − p_e(1 − κ))²] / (n (1 − p_e)²)
        Var0(κ) = [Σ p_i. p_.j (w_ij − (w̄_i. + w̄_.j))² − p_e²] / (n (1 − p_e)²)

    Examples
    --------
    >>> cohen_kappa([1, 2, 3, 3], [1, 2, 2, 3]).kappa          # doctest: +ELLIPSIS
    0.636...
    """
    alpha = check_alpha(alpha)
    if weights is not None:
        check_choice(weights, "weights", WEIGHTS)
    va, vb = _values(a, "a"), _values(b, "b")
    if va.size != vb.size:
        raise ValueError(f"`a` and `b` must rate the same subjects: lengths {va.size} and {vb.size}.")
    _check_same_label_types(va, vb)
    cats = _check_categories(np.concatenate([va, vb]), categories, "the ratings")
    if weights is not None and categories is None:
        warnings.warn(
            InferredCategoriesWarning(
                f"Weighted kappa with categories inferred from the ratings, {cats}: the weights "
                "depend on the spacing of the categories, so a possible rating between them that "
                f"nobody gave changes the kappa. State the scale with `categories=` (e.g. "
                f"categories={cats} with the unused values inserted).",
                tuple(cats),
            ),
            stacklevel=2,
        )
    k, n = len(cats), va.size
    code = {c: i for i, c in enumerate(cats)}
    ia = np.array([code[v] for v in va])
    ib = np.array([code[v] for v in vb])
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)

    pos = np.arange(k)
    dist = np.abs(pos[:, None] - pos[None, :]) / (k - 1)
    w = {None: (dist == 0).astype(float), "linear": 1 - dist, "quadratic": 1 - dist ** 2}[weights]
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    po = float(np.sum(w * p))
    pe = float(np.sum(w * np.outer(row, col)))
    kappa = _div(po - pe, 1 - pe)
    w_row = w @ col  # w̄_i.
    w_col = row @ w  # w̄_.j
    wsum = w_row[:, None] + w_col[None, :]
    var = (np.sum(p * (w - wsum * (1 - kappa)) ** 2) - (kappa - pe * (1 - kappa)) ** 2) \
        / (n * (1 - pe) ** 2) if pe < 1 else math.nan
    var0 = (np.sum(np.outer(row, col) * (w - wsum) ** 2) - pe ** 2) \
        / (n * (1 - pe) ** 2) if pe < 1 else math.nan
    se = math.sqrt(max(float(var), 0.0)) if math.isfinite(var) else math.nan
    se0 = math.sqrt(max(float(var0), 0.0)) if math.isfinite(var0) else math.nan
    z = _div(kappa, se0) if math.isfinite(kappa) else math.nan
    q = stats.norm.ppf(1 - alpha / 2)
    return CohenKappa(
        kappa=float(kappa), se=se, ci_low=float(kappa - q * se), ci_high=float(kappa + q * se),
        se_null=se0, z=float(z), p_value=_two_sided(z), observed_agreement=po,
        expected_agreement=pe, n=int(n), categories=tuple(cats), table=table,
        weights=weights, alpha=alpha,
    )


def fleiss_kappa(
    data,
    *,
    subject: str = "subject",
    rater: str | None = "rater",
    rating: str = "rating",
    categories: Sequence | None = None,
    alpha: float = 0.05,
) -> FleissKappa:
    """Fleiss' kappa for several raters, with null SE and a jackknife interval.

    Parameters
    ----------
    data : pandas.DataFrame or array-like
        Either a long DataFrame with columns ``subject`` and ``rating`` (and
        ``rater``, used to refuse duplicate ratings), one row per rating; or a
        counts matrix of shape (subjects, categories) whose entry ``[i, j]`` is
        the number of raters who put subject ``i`` in category ``j`` (Fleiss'
        own layout). Every subject must have the same number of ratings (≥ 2).
    subject, rater, rating : str
        Column names for the long layout (``rater=None`` skips the duplicate check).
    categories : sequence, optional
        Long layout: the possible ratings (default: the observed ones); counts
        layout: labels of the columns (default ``0..k-1``).
    alpha : float
        Confidence intervals have coverage ``1 - alpha``.

    Returns
    -------
    FleissKappa

    Notes
    -----
    The null SE (Fleiss, Nee & Landis 1979), with ``N`` subjects, ``n`` raters,
    category proportions ``p_j`` and ``q_j = 1 − p_j``::

        SE0 = sqrt(2 / (N n (n−1))) · sqrt((Σ p_j q_j)² − Σ p_j q_j (q_j − p_j)) / Σ p_j q_j

    It is valid only at kappa = 0, so the interval uses the delete-one-subject
    jackknife SE ``sqrt((N−1)/N · Σ_i (κ_(−i) − κ̄_(·))²)`` instead (a large-sample
    interval needing no resampling).
    """
    alpha = check_alpha(alpha)
    counts, cats = _fleiss_counts(data, subject=subject, rater=rater, rating=rating,
                                  categories=categories)
    n_sub = counts.shape[0]
    n_rat = int(counts[0].sum())
    if n_sub < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 subjects, got {n_sub}.")

    kappa, p_bar, pe = _fleiss_stat(counts.sum(axis=0), np.sum(_agree(counts, n_rat)),
                                    n_sub, n_rat)

    # Jackknife: dropping subject i removes its category counts and its P_i.
    tot = counts.sum(axis=0)[None, :] - counts
    agree = np.sum(_agree(counts, n_rat)) - _agree(counts, n_rat)
    loo = _fleiss_stat_vec(tot, agree, n_sub - 1, n_rat)
    se = math.sqrt((n_sub - 1) / n_sub * float(np.sum((loo - loo.mean()) ** 2))) \
        if np.all(np.isfinite(loo)) else math.nan

    pj = counts.sum(axis=0) / (n_sub * n_rat)
    pq = pj * (1 - pj)
    spq = float(pq.sum())
    scale = math.sqrt(2.0 / (n_sub * n_rat * (n_rat - 1)))
    se0 = scale * math.sqrt(max(spq ** 2 - float(np.sum(pq * (1 - 2 * pj))), 0.0)) / spq \
        if spq > 0 else math.nan
    z = _div(kappa, se0) if math.isfinite(kappa) else math.nan

    # Per category (Fleiss 1971, eq. 9/10): category j against all others.
    with np.errstate(divide="ignore", invalid="ignore"):
        kj = 1 - np.sum(counts * (n_rat - counts), axis=0) / (n_sub * n_rat * (n_rat - 1) * pq)
        zj = kj / scale
    kj = np.where(pq > 0, kj, np.nan)
    zj = np.where(pq > 0, zj, np.nan)
    per_cat = pd.DataFrame({
        "category": pd.Series(cats, dtype=object),
        "proportion": pj,
        "kappa": kj,
        "se_null": np.full(len(cats), scale),
        "z": zj,
        "p_value": [_two_sided(v) for v in zj],
    })
    q = stats.norm.ppf(1 - alpha / 2)
    return FleissKappa(
        kappa=float(kappa), se=se, ci_low=float(kappa - q * se), ci_high=float(kappa + q * se),
        se_null=se0, z=float(z), p_value=_two_sided(z), observed_agreement=float(p_bar),
        expected_agreement=float(pe), n_subjects=int(n_sub), n_raters=n_rat,
        categories=tuple(cats), per_category=per_cat, alpha=alpha,
    )


def _agree(counts: np.ndarray, n_rat: int) -> np.ndarray:
    """P_i: proportion of agreeing rater pairs for each subject."""
    return (np.sum(counts.astype(float) ** 2, axis=1) - n_rat) / (n_rat * (n_rat - 1))


def _fleiss_stat(totals, sum_agree, n_sub, n_rat):
    pj = totals / (n_sub * n_rat)
    pe = float(np.sum(pj ** 2))
    p_bar = sum_agree / n_sub
    return _div(p_bar - pe, 1 - pe), p_bar, pe


def _fleiss_stat_vec(totals, sum_agree, n_sub, n_rat):
    pe = np.sum((totals / (n_sub * n_rat)) ** 2, axis=1)
    p_bar = sum_agree / n_sub
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pe < 1, (p_bar - pe) / (1 - pe), np.nan)


def _fleiss_counts(data, *, subject, rater, rating, categories):
    if isinstance(data, pd.DataFrame) and subject in data.columns and rating in data.columns:
        df = data
        if df[[subject, rating]].isna().any().any():
            raise ValueError(
                f"Columns '{subject}' and '{rating}' must not have missing values; "
                "drop incomplete ratings (Fleiss' kappa needs the same number of "
                "ratings per subject)."
            )
        if rater is not None and rater in df.columns:
            dup = df.duplicated([subject, rater])
            if dup.any():
                row = df.loc[dup].iloc[0]
                raise ValueError(
                    f"{int(dup.sum())} duplicated subject × rater row(s), e.g. "
                    f"{subject}={row[subject]!r}, {rater}={row[rater]!r}."
                )
        values = [v.item() if isinstance(v, np.generic) else v for v in df[rating]]
        cats = _check_categories(values, categories, f"column '{rating}'")
        table = pd.crosstab(df[subject], pd.Categorical(values, categories=cats),
                            dropna=False)
        counts = table.reindex(columns=pd.CategoricalIndex(cats, categories=cats),
                               fill_value=0).to_numpy(dtype=np.int64)
        per_subject = counts.sum(axis=1)
        if np.unique(per_subject).size != 1:
            uniq, freq = np.unique(per_subject, return_counts=True)
            detail = ", ".join(f"{f} subject(s) with {u}" for u, f in zip(uniq, freq))
            raise ValueError(
                "Fleiss' kappa needs the same number of ratings for every subject; "
                f"found {detail}."
            )
    else:
        if isinstance(data, pd.DataFrame) and not all(
                pd.api.types.is_numeric_dtype(t) for t in data.dtypes):
            raise ValueError(
                f"`data` is neither a long table with columns '{subject}' and "
                f"'{rating}' nor a numeric counts matrix; columns are {list(data.columns)}."
            )
        arr = np.asarray(data, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"A counts matrix must be 2-D (subjects × categories), got shape {arr.shape}.")
        if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
            raise ValueError("A counts matrix must hold non-negative integer counts.")
        counts = arr.astype(np.int64)
        per_subject = counts.sum(axis=1)
        if np.unique(per_subject).size != 1:
            raise ValueError(
                "Every row of the counts matrix must sum to the same number of raters; "
                f"row sums range from {per_subject.min()} to {per_subject.max()}."
            )
        cats = list(range(counts.shape[1])) if categories is None else list(categories)
        if len(cats) != counts.shape[1]:
            raise ValueError(
                f"`categories` has {len(cats)} labels but the counts matrix has "
                f"{counts.shape[1]} columns."
            )
        if len(cats) < 2:
            raise ValueError("Kappa needs at least 2 categories.")
    if counts.shape[0] == 0:
        raise ValueError("No subjects to rate.")
    if counts[0].sum() < 2:
        raise ValueError(
            f"Fleiss' kappa needs at least 2 ratings per subject, got {int(counts[0].sum())}."
        )
    return counts, cats
