"""The full evaluation report of one evaluation: every statistic of DESIGN.md §7, written as
``report.md``, ``report.html``, ``report.json`` and PNG figures.

All lesion-level statistics treat the patient as the unit of independence where the method
allows it (Obuchowski's clustered variance, patient bootstrap, MRMC with patient clusters);
DeLong, Wilson and McNemar treat lesions as independent and are shown next to the clustered
figures so that the effect of clustering is visible. A statistic that is undefined on the
data at hand (e.g. one class only among a reader's lesions) is reported as not available
with the reason, never dropped silently, and the rest of the report is still written.

Positive class: pCR (no viable tumour). A reader's call 1 and a model call 1 both mean
"read as complete response", i.e. the lesion would be a candidate to be left in place.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import schema

MODEL = "model"
# Threshold probabilities of P(pCR) for the decision curves: the clinically relevant range
# for leaving a lesion in place sits high (leaving viable tumour is worse than an
# unnecessary resection), but the low end shows where the model stops helping.
DECISION_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
RELIABILITY_BINS = 10  # quantile bins: equal numbers of lesions per point
ROC_GRID = np.linspace(0.0, 1.0, 101)  # false-positive rates of the pointwise ROC band
PATIENT_METHODS_ORDER = ("min", "product", "max", "noisy_or")
# Readers give ordinal scores, not probabilities: a patient's score for "all lesions pCR"
# is the lowest lesion score (the least convincing lesion), for "any lesion pCR" the highest.
READER_PATIENT_AGGREGATE = {"all_pcr": "min", "any_pcr": "max"}
EVENT_TEXT = {"all_pcr": "every lesion of the patient is pCR",
              "any_pcr": "at least one lesion of the patient is pCR"}


@dataclass
class Report:
    """The evaluation report.

    Attributes
    ----------
    sections : dict
        All numbers by section (JSON-able; NaN and infinities are ``None``), as in ``report.json``.
    markdown : str
        The report as Markdown (``report.md``).
    files : list of Path
        Files written: report.md, report.html, report.json and the figures.
    """

    sections: dict
    markdown: str
    files: list[Path] = field(default_factory=list)


# =========================================================================== helpers
def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become ``None`` (JSON has neither)."""
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _attempt(compute: Callable, *args, **kwargs) -> dict:
    """One statistic as a dict with ``available``; undefined on these data -> the reason.

    Warnings of the stats functions (e.g. undefined bootstrap replicates, a calibration fit
    that did not converge) are kept in the result so that the report can show them.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = compute(*args, **kwargs)
        except ValueError as exc:
            return {"available": False, "reason": str(exc)}
    result = {"available": True, **(out.to_dict() if hasattr(out, "to_dict") else out)}
    messages = sorted({str(w.message) for w in caught})
    if messages:
        result["warnings"] = messages
    return result


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


def _sizes(frame: pd.DataFrame) -> dict:
    return {"n_lesions": int(len(frame)), "n_patients": int(frame.patient_id.nunique()),
            "n_pcr": int(frame.pcr.sum()), "n_viable": int((frame.pcr == 0).sum())}


def reader_ids(readings: pd.DataFrame) -> list[str]:
    return [str(r) for r in sorted(readings.reader_id.astype(str).unique())]


def paired(predictions: pd.DataFrame, readings: pd.DataFrame, reader: str) -> pd.DataFrame:
    """The model's lesions that ``reader`` read, with the reader's score and call."""
    key = list(schema.LESION_KEY)
    reads = readings[readings.reader_id.astype(str) == reader][key + ["score", "call"]]
    return predictions.merge(reads, on=key, how="inner")


def read_by_all(predictions: pd.DataFrame, readings: pd.DataFrame, readers: list[str]) -> pd.DataFrame:
    """Lesions with a prediction and a reading from every reader: one column per reader
    (``score_<r>``, ``call_<r>``). MRMC, Fleiss' kappa and the decision curves need one
    common set of lesions."""
    key = list(schema.LESION_KEY)
    table = predictions
    for r in readers:
        reads = readings[readings.reader_id.astype(str) == r][key + ["score", "call"]]
        table = table.merge(reads.rename(columns={"score": f"score_{r}", "call": f"call_{r}"}), on=key)
    return table


def matched_model_calls(frame: pd.DataFrame, thresholds: pd.DataFrame, reader: str) -> np.ndarray:
    """Model calls at each fold's threshold matched to ``reader`` (see evaluate.apply_thresholds)."""
    from dlm_ml.evaluation.thresholds import apply_thresholds

    return apply_thresholds(frame, thresholds.assign(reader_id=thresholds.reader_id.astype(str)), reader)


# =========================================================================== 1. discrimination
def auc_summary(name: str, frame: pd.DataFrame, score: str, *, n_boot: int, seed: int, alpha: float) -> dict:
    """AUC of one score with three intervals: DeLong (lesions independent), Obuchowski
    (patients as clusters) and the patient bootstrap."""
    from dlm_ml.stats import cluster_bootstrap_auc, clustered_auc, delong_auc_ci

    truth, values, patients = frame.pcr.to_numpy(), frame[score].to_numpy(float), frame.patient_id.to_numpy()
    row = {"method": name, **_sizes(frame)}
    if frame.pcr.nunique() < 2:
        reason = "one outcome class only among these lesions: AUC undefined"
        return {**row, **{k: _unavailable(reason) for k in ("delong", "obuchowski", "bootstrap")}}
    row["delong"] = _attempt(delong_auc_ci, truth, values, alpha=alpha)
    row["obuchowski"] = _attempt(clustered_auc, truth, values, patients, alpha=alpha)
    row["bootstrap"] = _attempt(cluster_bootstrap_auc, truth, values, patients, n_boot=n_boot, alpha=alpha,
                                seed=seed)
    return row


def discrimination(predictions, readings, readers, *, n_boot, seed, alpha) -> list[dict]:
    """Section 1: the model on all evaluated lesions, each reader (by score) on the lesions read."""
    rows = [auc_summary(MODEL, predictions, "prob_pcr", n_boot=n_boot, seed=seed, alpha=alpha)]
    for r in readers:
        rows.append(auc_summary(f"reader {r}", paired(predictions, readings, r), "score",
                                n_boot=n_boot, seed=seed, alpha=alpha))
    return rows


# =========================================================================== 2. model vs each reader
def model_vs_reader(frame: pd.DataFrame, reader: str, *, alpha: float) -> dict:
    """Paired AUC difference model − reader on the lesions both have: DeLong and Obuchowski."""
    from dlm_ml.stats import clustered_auc_difference, delong_test

    row = {"reader": reader, **_sizes(frame)}
    if frame.pcr.nunique() < 2:
        reason = "one outcome class only among the lesions this reader read"
        return {**row, "delong": _unavailable(reason), "obuchowski": _unavailable(reason)}
    truth, prob, score = frame.pcr.to_numpy(), frame.prob_pcr.to_numpy(), frame.score.to_numpy(float)
    row["delong"] = _attempt(delong_test, truth, prob, score, alpha=alpha)
    row["obuchowski"] = _attempt(clustered_auc_difference, truth, prob, score, frame.patient_id.to_numpy(),
                                 alpha=alpha)
    return row


def comparisons(predictions, readings, readers, *, alpha) -> list[dict]:
    """Section 2."""
    return [model_vs_reader(paired(predictions, readings, r), r, alpha=alpha) for r in readers]


# =========================================================================== 3. MRMC
def mrmc_section(predictions, readings, readers, *, alpha) -> dict:
    """Section 3: model vs the readers as a group (Obuchowski–Rockette, Hillis df), patients as
    clusters, on the lesions every reader read (the analysis needs a fully crossed design)."""
    from dlm_ml.stats import model_vs_readers

    if len(readers) < 2:
        return _unavailable(f"{len(readers)} reader(s): a random-reader analysis needs at least 2 readers "
                            "(the comparison with a single reader is in 'model vs each reader')")
    common = read_by_all(predictions, readings, readers)
    info = {"n_lesions_used": int(len(common)), "n_patients_used": int(common.patient_id.nunique()),
            "n_lesions_not_read_by_all": int(len(predictions) - len(common))}
    if common.pcr.nunique() < 2:
        return {**info, **_unavailable("one outcome class only among the lesions read by every reader")}
    cases = common.assign(case=np.arange(len(common)))
    model_scores = cases[["case", "pcr", "prob_pcr", "patient_id"]]
    long = pd.concat([cases[["case"]].assign(reader=r, rating=cases[f"score_{r}"].to_numpy(float))
                      for r in readers], ignore_index=True)
    res = _attempt(lambda: {"result": model_vs_readers(model_scores, long, truth="pcr", prob="prob_pcr",
                                                       cluster="patient_id", model_label=MODEL, alpha=alpha)})
    if not res["available"]:
        return {**info, **res}
    result = res.pop("result")
    return {**info, **res, "cov_method": result.cov_method, "n_clusters": result.n_clusters,
            "rrrc": _analysis_summary(result.rrrc), "frrc": _analysis_summary(result.frrc),
            "reader_aucs": result.aucs}


def _analysis_summary(analysis) -> dict:
    """The numbers of one OR analysis a reader of the report needs.

    Infinite degrees of freedom (a normal reference, e.g. a test whose reader mean square is
    0, as the model's is) are flagged, since JSON turns them into null like undefined ones.
    """
    def flag(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(df_infinite=np.isinf(table.df.to_numpy(float)))

    df2 = analysis.df2
    return {"description": analysis.description, "statistic_name": analysis.statistic_name,
            "statistic": analysis.statistic, "df1": analysis.df1, "df2": df2,
            "df2_infinite": df2 is not None and math.isinf(df2), "p_value": analysis.p_value,
            "difference": flag(analysis.differences).to_dict(orient="records")[0],
            "tests": flag(analysis.tests)}


# =========================================================================== 4. operating points
def _proportion(fn: Callable[[np.ndarray, np.ndarray], tuple[int, int]]) -> Callable:
    """A proportion metric for the bootstrap: NaN when its denominator is 0 (replicate failed)."""
    def metric(truth, call):
        num, den = fn(np.asarray(truth), np.asarray(call))
        return num / den if den else float("nan")
    return metric


sensitivity_metric = _proportion(lambda t, c: (int(np.sum((t == 1) & (c == 1))), int(np.sum(t == 1))))
specificity_metric = _proportion(lambda t, c: (int(np.sum((t == 0) & (c == 0))), int(np.sum(t == 0))))


def call_metrics(frame: pd.DataFrame, call: np.ndarray, *, n_boot: int, seed: int, alpha: float) -> dict:
    """Sensitivity, specificity, PPV, NPV (Wilson), patient-bootstrap CIs for sensitivity and
    specificity, and the share of lesions called complete response that hold viable tumour."""
    from dlm_ml.stats import cluster_bootstrap_ci, diagnostic_metrics, proportion_ci

    truth, patients = frame.pcr.to_numpy(), frame.patient_id.to_numpy()
    m = diagnostic_metrics(truth, call, alpha=alpha).to_dict()
    c = m["counts"]
    out = {k: m[k] for k in ("sensitivity", "specificity", "ppv", "npv", "counts")}
    # The clinically critical error: a lesion left in place because it was called complete
    # response, yet it holds viable tumour (= 1 − PPV, with its own Wilson interval).
    out["viable_among_called_cr"] = proportion_ci(c["fp"], c["tp"] + c["fp"], alpha=alpha).to_dict()
    for name, metric in (("sensitivity", sensitivity_metric), ("specificity", specificity_metric)):
        out[f"{name}_bootstrap"] = _attempt(cluster_bootstrap_ci, metric, patients, truth, np.asarray(call),
                                            n_boot=n_boot, alpha=alpha, seed=seed)
    return out


def operating_point(frame, reader, thresholds, *, n_boot, seed, alpha) -> dict:
    """One reader's calls, the model at the threshold matched to that reader, McNemar."""
    from dlm_ml.stats import mcnemar_test

    row = {"reader": reader, **_sizes(frame)}
    if not len(frame):
        return {**row, **_unavailable("this reader read none of the evaluated lesions")}
    reader_call = frame.call.to_numpy(int)
    row["reader_calls"] = call_metrics(frame, reader_call, n_boot=n_boot, seed=seed, alpha=alpha)
    if thresholds is None:
        row["model_matched"] = _unavailable("no thresholds given (a bare predictions file): the model's "
                                            "reader-matched operating points need the per-fold thresholds "
                                            "chosen on training-side validation lesions")
        return row
    try:
        model_call = matched_model_calls(frame, thresholds, reader)
    except ValueError as exc:
        row["model_matched"] = _unavailable(str(exc))
        return row
    per_fold = thresholds[thresholds.reader_id.astype(str) == reader].drop(columns="reader_id")
    # An infinite threshold (no lesion called complete response) becomes null in JSON: say so.
    per_fold = per_fold.assign(no_lesion_called_cr=np.isinf(per_fold.threshold.to_numpy(float)))
    row["model_matched"] = {"available": True, "thresholds": per_fold,
                            **call_metrics(frame, model_call, n_boot=n_boot, seed=seed, alpha=alpha)}
    row["mcnemar"] = _attempt(mcnemar_test, model_call, reader_call, exact=True)
    return row


def operating_points(predictions, readings, readers, thresholds, *, n_boot, seed, alpha) -> list[dict]:
    """Section 4."""
    return [operating_point(paired(predictions, readings, r), r, thresholds, n_boot=n_boot, seed=seed,
                            alpha=alpha) for r in readers]


# =========================================================================== 5. agreement
def agreement(predictions, readings, readers, *, alpha) -> dict:
    """Section 5: Fleiss' kappa over all readers (lesions read by all), pairwise Cohen's kappa
    (lesions both read): quadratic-weighted on scores, unweighted on calls."""
    from dlm_ml.stats import cohen_kappa, fleiss_kappa

    if len(readers) < 2:
        return _unavailable(f"{len(readers)} reader(s): agreement needs at least 2 readers")
    # Weighted kappa depends on category positions: use every score any reader gave.
    categories = sorted(readings.score.unique().tolist())
    common = read_by_all(predictions, readings, readers)
    out = {"available": True, "score_categories": categories, "n_lesions_read_by_all": int(len(common))}
    for what in ("call", "score"):
        long = pd.concat([pd.DataFrame({"subject": np.arange(len(common)), "rater": r,
                                        "rating": common[f"{what}_{r}"].to_numpy()}) for r in readers])
        out[f"fleiss_{what}"] = _attempt(fleiss_kappa, long, alpha=alpha)
    pairs = []
    for a, b in combinations(readers, 2):
        both = paired(predictions, readings, a).merge(
            paired(predictions, readings, b)[list(schema.LESION_KEY) + ["score", "call"]],
            on=list(schema.LESION_KEY), suffixes=("_a", "_b"))
        pairs.append({"reader_a": a, "reader_b": b, "n_lesions": int(len(both)),
                      "score_quadratic": _attempt(cohen_kappa, both.score_a.to_numpy(), both.score_b.to_numpy(),
                                                  weights="quadratic", categories=categories, alpha=alpha),
                      "call_unweighted": _attempt(cohen_kappa, both.call_a.to_numpy(), both.call_b.to_numpy(),
                                                  categories=[0, 1], alpha=alpha)})
    out["pairwise"] = pairs
    return out


# =========================================================================== 6. calibration
def calibration(predictions: pd.DataFrame, *, alpha: float) -> dict:
    """Section 6: Brier score (with the no-skill reference), logistic recalibration, reliability."""
    from dlm_ml.stats import brier_score, calibration_intercept_slope, reliability_curve

    truth, prob = predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy()
    prevalence = float(truth.mean())
    out = {"n_lesions": int(len(truth)), "brier": brier_score(truth, prob),
           # Constant prediction of the prevalence: a model must beat this to carry information.
           "brier_prevalence_only": prevalence * (1 - prevalence), "prevalence": prevalence}
    if len(np.unique(truth)) < 2:
        out["recalibration"] = _unavailable("one outcome class only: calibration intercept/slope undefined")
    else:
        fit = _attempt(calibration_intercept_slope, truth, prob)
        if fit["available"]:
            fit.update(_wald(fit, "intercept", alpha), **_wald(fit, "slope", alpha))
        out["recalibration"] = fit
    out["reliability"] = reliability_curve(truth, prob, n_bins=RELIABILITY_BINS, strategy="quantile", alpha=alpha)
    return out


def _wald(fit: dict, name: str, alpha: float) -> dict:
    from scipy.stats import norm

    q = norm.ppf(1 - alpha / 2)
    return {f"{name}_ci_low": fit[name] - q * fit[f"{name}_se"], f"{name}_ci_high": fit[name] + q * fit[f"{name}_se"]}


# =========================================================================== 7. decision curves
LEAVE_ALL, RESECT_ALL = "leave all", "resect all"


def decision(predictions, readings, readers, thresholds) -> dict:
    """Section 7: net benefit of leaving a lesion in place when P(pCR) ≥ pt.

    "Treat" = leave in place, so ``truth = pcr``, ``prob = prob_pcr``, "leave all" is treat all
    and "resect all" is treat none (net benefit 0). Readers' calls are fixed strategies (leave
    what they call complete response). With readers, all strategies are compared on the lesions
    every reader read, so that the curves share one denominator.
    """
    from dlm_ml.stats import decision_curve

    frame = read_by_all(predictions, readings, readers) if readers else predictions
    strategies, groups = {MODEL: frame.prob_pcr.to_numpy()}, {MODEL: (MODEL, "curve")}
    for r in readers:
        strategies[f"reader {r} calls"] = frame[f"call_{r}"].to_numpy(float)
        groups[f"reader {r} calls"] = (r, "calls")
    if thresholds is not None:
        for r in readers:
            try:
                strategies[f"model @ {r} threshold"] = matched_model_calls(frame, thresholds, r).astype(float)
                groups[f"model @ {r} threshold"] = (r, "threshold")
            except ValueError:
                pass  # reported under operating points
    out = {"n_lesions": int(len(frame)), "n_lesions_not_read_by_all": int(len(predictions) - len(frame)),
           "thresholds": DECISION_THRESHOLDS, "treat": "leave the lesion in place",
           "treat_all": LEAVE_ALL, "treat_none": RESECT_ALL, "strategy_groups": groups}
    if not len(frame):
        return {**out, **_unavailable("no lesion read by every reader")}
    curve = decision_curve(frame.pcr.to_numpy(), strategies, DECISION_THRESHOLDS,
                           treat_all_label=LEAVE_ALL, treat_none_label=RESECT_ALL)
    # Net benefit in this framing equals net resections avoided per lesion against "resect
    # all"; decision_curve's net_interventions_avoided is measured against "leave all", i.e.
    # net lesions with viable tumour kept from being left in place.
    curve = curve.rename(columns={"net_interventions_avoided": "net_viable_not_left_vs_leave_all"})
    return {**out, "available": True, "curve": curve}


# =========================================================================== 8. patient level
def patient_level(predictions, readings, readers, *, n_boot, seed, alpha) -> dict:
    """Section 8: one row per patient; model by each aggregation, readers by min/max score,
    patient-level DeLong (patients are independent) and bootstrap CIs, model vs reader."""
    from dlm_ml.stats import PATIENT_METHODS, aggregate_to_patient, delong_test

    out = {"n_patients": int(predictions.patient_id.nunique()), "methods": [], "comparisons": []}
    model = {}
    for method in PATIENT_METHODS_ORDER:
        agg = aggregate_to_patient(predictions.patient_id.to_numpy(), predictions.pcr.to_numpy(),
                                   predictions.prob_pcr.to_numpy(), method=method)
        model[method] = agg
        row = auc_summary(f"model ({method})", agg.rename(columns={"truth": "pcr"}), "prob",
                          n_boot=n_boot, seed=seed, alpha=alpha)
        out["methods"].append({**_patient_sizes(row), "event": PATIENT_METHODS[method]})
    for r in readers:
        scores = _reader_patient_scores(predictions, readings, r)
        for event, how in READER_PATIENT_AGGREGATE.items():
            agg = scores[event]
            row = auc_summary(f"reader {r} ({how} score)", agg, "score", n_boot=n_boot, seed=seed, alpha=alpha)
            out["methods"].append({**_patient_sizes(row), "event": event,
                                   "n_patients_not_fully_read": scores["n_not_fully_read"]})
        primary = scores["all_pcr"].merge(model["min"][["patient_id", "prob"]], on="patient_id")
        cmp = {"reader": r, "event": "all_pcr", "model_method": "min", "reader_method": "min",
               "n_patients": int(len(primary))}
        cmp["delong"] = (_attempt(delong_test, primary.pcr.to_numpy(), primary.prob.to_numpy(),
                                  primary.score.to_numpy(float), alpha=alpha)
                         if primary.pcr.nunique() == 2 else _unavailable("one outcome class only"))
        out["comparisons"].append(cmp)
    return out


def _patient_sizes(row: dict) -> dict:
    """At patient level a 'lesion' row is a patient: rename the counts accordingly."""
    row = dict(row)
    row.pop("n_lesions")
    row["n_events"], row["n_non_events"] = row.pop("n_pcr"), row.pop("n_viable")
    return row


def _reader_patient_scores(predictions, readings, reader) -> dict:
    """Per patient: the reader's min and max lesion score, on patients whose every evaluated
    lesion the reader read (a partly read patient has no defined patient-level reading)."""
    frame = paired(predictions, readings, reader)
    n_eval = predictions.groupby("patient_id").size()
    n_read = frame.groupby("patient_id").size().reindex(n_eval.index, fill_value=0)
    full = n_eval.index[n_read == n_eval]
    g = frame[frame.patient_id.isin(full)].groupby("patient_id", sort=True)
    out = {"n_not_fully_read": int(len(n_eval) - len(full))}
    for event, how in READER_PATIENT_AGGREGATE.items():
        truth = g.pcr.min() if event == "all_pcr" else g.pcr.max()
        out[event] = pd.DataFrame({"patient_id": truth.index, "pcr": truth.to_numpy(),
                                   "score": getattr(g.score, how)().to_numpy(float)})
    return out


# =========================================================================== 9. counts
def coverage(counts: dict, predictions, readings, readers) -> dict:
    """Section 9 (shown first): what is in the cohort and what each analysis could use."""
    out = dict(counts)
    for r in readers:
        out[f"lesions_read_by_{r}"] = int(len(paired(predictions, readings, r)))
    if readers:
        out["lesions_read_by_all_readers"] = int(len(read_by_all(predictions, readings, readers)))
    return out


# =========================================================================== ROC band
def roc_band(frame: pd.DataFrame, *, n_boot: int, seed: int, alpha: float) -> dict:
    """Pointwise patient-bootstrap band of the model's ROC curve (vertical averaging).

    Each replicate resamples patients with replacement; its true-positive rate is read at
    fixed false-positive rates (linear interpolation between vertices, the upper value at
    vertical steps); the band is the percentile interval at each rate. Replicates with one
    class only are counted and skipped.
    """
    from dlm_ml.stats import roc_curve_points

    codes, patients = pd.factorize(frame.patient_id)
    members = [np.flatnonzero(codes == i) for i in range(len(patients))]
    truth, prob = frame.pcr.to_numpy(), frame.prob_pcr.to_numpy()
    rng = np.random.default_rng(seed)
    tprs, failed = [], 0
    for _ in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if len(np.unique(truth[idx])) < 2:
            failed += 1
            continue
        curve = roc_curve_points(truth[idx], prob[idx])
        tprs.append(np.interp(ROC_GRID, curve.fpr, curve.tpr))
    if len(tprs) < 2:
        return _unavailable(f"only {len(tprs)} of {n_boot} bootstrap replicates held both classes")
    low, high = np.quantile(np.vstack(tprs), [alpha / 2, 1 - alpha / 2], axis=0)
    return {"available": True, "fpr": ROC_GRID, "tpr_low": low, "tpr_high": high, "n_boot": n_boot,
            "n_failed": failed}


# =========================================================================== document
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1,h2,h3{color:#123}h2{border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.8em}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#eef2f6}td:first-child,th:first-child{text-align:left}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}p.note{color:#555;font-size:.9em}code{background:#f3f3f3}"""


class Document:
    """Blocks rendered both as Markdown and as HTML, so the two never disagree."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def para(self, text: str, note: bool = False):
        self.blocks.append(("p", text, note))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def image(self, src: str, alt: str):
        self.blocks.append(("img", src, alt))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(("*" + block[1] + "*") if block[2] else block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                header, rows = block[1], block[2]
                cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
                lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
                out.append("\n".join(lines))
            else:
                out.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        esc = html.escape
        out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
               f"<style>{CSS}</style></head><body>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
            elif kind == "p":
                css_class = ' class="note"' if block[2] else ""
                out.append(f"<p{css_class}>{esc(block[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
                body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                out.append(f"<img src=\"{esc(block[1])}\" alt=\"{esc(block[2])}\">")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def fmt(x, digits: int = 3) -> str:
    """A number for a table; missing/undefined as an en dash, infinities spelt out."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    return f"{x:.{digits}f}"


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p) -> str:
    """'p = 0.034' or 'p < 0.001' for running text."""
    value = fmt_p(p)
    return f"p {value[0]} {value[1:]}" if value.startswith("<") else f"p = {value}"


def fmt_df(df, infinite: bool = False, digits: int = 1) -> str:
    """Degrees of freedom; infinite (a normal reference) spelt out (JSON holds it as null)."""
    return "∞" if infinite else fmt(df, digits)


def fmt_ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "–"
    return f"{fmt(est, digits)} ({fmt(lo, digits)} to {fmt(hi, digits)})"


def _interval(result: dict, est: str = "auc", lo: str = "ci_low", hi: str = "ci_high") -> str:
    """An interval of an _attempt result, or 'n/a' (the reason goes to the notes)."""
    if not result.get("available", True):
        return "n/a"
    return fmt_ci(result[est], result[lo], result[hi])


def _reasons(section: Any, where: str, notes: list[str]):
    """Collect every 'not available' reason and every warning, with where it came from.

    The path names dict keys, and for list items their method or reader.
    """
    if isinstance(section, dict):
        if section.get("available") is False:
            notes.append(f"{where}: not available — {section['reason']}")
        for w in section.get("warnings", []):
            notes.append(f"{where}: {w}")
        for k, v in section.items():
            if k not in ("reason", "warnings"):
                _reasons(v, f"{where} / {k}", notes)
    elif isinstance(section, list):
        for v in section:
            label = v.get("method") or v.get("reader") if isinstance(v, dict) else None
            _reasons(v, f"{where} / {label}" if label else where, notes)


# =========================================================================== rendering
def _n(row: dict) -> str:
    return f"{row['n_lesions']} ({row['n_patients']})"


def _prop(p: dict) -> str:
    """A proportion with its numerator/denominator and interval."""
    if not p.get("n"):
        return "– (0/0)"
    return f"{fmt(p['estimate'])} ({p['successes']}/{p['n']}; {fmt(p['ci_low'])} to {fmt(p['ci_high'])})"


def render_counts(doc: Document, counts: dict):
    doc.heading(2, "Lesions evaluated and left out")
    doc.para("Nothing is dropped silently: lesions without an outcome, without a prediction or without a "
             "reading are counted here. Each analysis states the lesions it used.")
    doc.table(["", "count"], [[k.replace("_", " "), fmt(v)] for k, v in counts.items()])


def render_discrimination(doc: Document, rows: list[dict], level: str, roc: str | None):
    doc.heading(2, "1. Discrimination (lesion level)")
    doc.para(f"AUC of P(pCR) (model) and of the ordinal confidence score (readers), each on the lesions it "
             f"has. {level} intervals: DeLong treats lesions as independent; Obuchowski's clustered "
             "variance and the patient bootstrap treat the patient as the unit of independence. Design "
             "effect = (clustered SE / DeLong SE)².")
    table = []
    for r in rows:
        ob = r["obuchowski"]
        deff = (ob["se"] / ob["se_unclustered"]) ** 2 if ob.get("available") and ob["se_unclustered"] else None
        auc = r["delong"]["auc"] if r["delong"].get("available") else None
        table.append([r["method"], _n(r), f"{r['n_pcr']} / {r['n_viable']}", fmt(auc),
                      _interval(r["delong"], "auc"), _interval(ob, "auc"), fmt(deff, 2),
                      _interval(r["bootstrap"], "estimate")])
    doc.table(["method", "lesions (patients)", "pCR / viable", "AUC", "DeLong CI", "Obuchowski CI",
               "design effect", "patient-bootstrap CI"], table)
    if roc:
        doc.image(roc, "ROC curve of the model with pointwise patient-bootstrap band and reader operating points")


def render_comparisons(doc: Document, rows: list[dict], level: str):
    doc.heading(2, "2. Model vs each reader (paired, lesions both have)")
    doc.para("Difference = AUC(model) − AUC(reader) on the lesions that reader read. DeLong's paired test "
             "treats lesions as independent; Obuchowski's clustered test uses patients as clusters "
             f"(the primary figure when patients have several lesions). {level} CI of the difference.")
    table = []
    for r in rows:
        for name in ("delong", "obuchowski"):
            t = r[name]
            label = "DeLong" if name == "delong" else "Obuchowski (clustered)"
            if not t.get("available"):
                table.append([f"reader {r['reader']}", _n(r), "–", "–", "–", label, "n/a", "n/a", "n/a", "n/a"])
                continue
            table.append([f"reader {r['reader']}", _n(r), fmt(t["auc_a"]), fmt(t["auc_b"]), fmt(t["diff"]), label,
                          fmt(t["se"]), fmt(t["z"], 2), fmt_p(t["p_value"]), fmt_ci(t["diff"], t["ci_low"],
                                                                                     t["ci_high"])])
    doc.table(["reader", "lesions (patients)", "AUC model", "AUC reader", "difference", "test", "SE", "z", "p",
               "difference (CI)"], table)


def render_mrmc(doc: Document, m: dict, level: str):
    doc.heading(2, "3. Model vs the readers as a group (MRMC)")
    if not m.get("available"):
        extra = f" ({m['n_lesions_used']} lesions read by every reader)" if "n_lesions_used" in m else ""
        doc.para(f"MRMC analysis not shown: {m['reason']}{extra}.")
        return
    doc.para("Obuchowski–Rockette analysis with Hillis denominator degrees of freedom; the model enters as a "
             "'test' with the same rating for every reader, so the comparison is model vs the mean reader. "
             f"Covariances by {m['cov_method']} with patients as clusters ({m['n_clusters']} patients). "
             f"Lesions used: {m['n_lesions_used']} read by every reader; {m['n_lesions_not_read_by_all']} "
             "evaluated lesions were not read by every reader and are not in this analysis. Random readers "
             "(RRRC) generalise to new readers and new patients; fixed readers (FRRC) to new patients only.")
    table = []
    for key in ("rrrc", "frrc"):
        a = m[key]
        d = a["difference"]
        df = fmt(a["df1"], 0) + ("" if a["df2"] is None and not a["df2_infinite"] else
                                 f", {fmt_df(a['df2'], a['df2_infinite'])}")
        table.append([a["description"], f"{a['statistic_name']} = {fmt(a['statistic'], 2)}", df,
                      fmt_p(a["p_value"]), fmt_ci(d["estimate"], d["ci_low"], d["ci_high"])])
    doc.table(["analysis", "statistic", "df", "p", f"AUC model − readers ({level} CI)"], table)
    doc.table(["test", f"mean AUC (RRRC {level} CI)", "SE", "df"],
              [[t["test"], fmt_ci(t["auc"], t["ci_low"], t["ci_high"]), fmt(t["se"]), fmt_df(t["df"], t["df_infinite"])]
               for t in m["rrrc"]["tests"]])


def render_operating_points(doc: Document, rows: list[dict], level: str):
    doc.heading(2, "4. Operating points (binary calls)")
    doc.para("Positive = pCR = called complete response (a candidate to be left in place). Sensitivity = pCR "
             "lesions called complete response; specificity = lesions with viable tumour called 'not complete "
             "response'; PPV = pCR among lesions called complete response; NPV = viable tumour among lesions "
             "called 'not complete response'. The clinically critical figure is the last column: lesions "
             "called complete response that still hold viable tumour (1 − PPV), i.e. what would be left "
             f"behind. Wilson {level} intervals (lesions independent) and patient-bootstrap intervals for "
             "sensitivity and specificity. The model's calls use, in each fold, the threshold matched to "
             "the reader's specificity on that fold's training-side validation lesions.")
    header = ["strategy", "lesions (patients)", "sensitivity (Wilson)", "sensitivity (bootstrap CI)",
              "specificity (Wilson)", "specificity (bootstrap CI)", "PPV", "NPV",
              "viable tumour among called CR (1 − PPV)"]
    table, lines = [], []
    for r in rows:
        strategies = [(f"reader {r['reader']} calls", r.get("reader_calls"))]
        matched = r.get("model_matched")
        if matched and matched.get("available"):
            strategies.append((f"model @ {r['reader']} threshold", matched))
        for name, m in strategies:
            if m is None:
                continue
            table.append([name, _n(r), _prop(m["sensitivity"]), _interval(m["sensitivity_bootstrap"], "estimate"),
                          _prop(m["specificity"]), _interval(m["specificity_bootstrap"], "estimate"),
                          _prop(m["ppv"]), _prop(m["npv"]), _prop(m["viable_among_called_cr"])])
        if matched and matched.get("available"):
            th = ", ".join(f"fold {t['fold']}: {'∞' if t['no_lesion_called_cr'] else fmt(t['threshold'])}"
                           for t in matched["thresholds"])
            mc = r["mcnemar"]
            mc_text = (f"exact McNemar model vs reader calls: lesions called CR by the model only {mc['n10']}, "
                       f"by the reader only {mc['n01']}, {p_text(mc['p_value'])}") if mc.get("available") else \
                "McNemar n/a"
            lines.append(f"reader {r['reader']}: thresholds on P(pCR) ({th}; ∞ = no lesion called complete "
                         f"response in that fold); {mc_text}.")
        elif matched:
            lines.append(f"reader {r['reader']}: model at the matched threshold not available — {matched['reason']}")
    doc.table(header, table)
    doc.bullets(lines)


def render_agreement(doc: Document, a: dict, level: str):
    doc.heading(2, "5. Agreement between readers")
    if not a.get("available"):
        doc.para(f"Not shown: {a['reason']}.")
        return
    doc.para(f"Fleiss' kappa over all readers on the {a['n_lesions_read_by_all']} lesions every reader read "
             f"(jackknife {level} CI; p tests kappa = 0); pairwise Cohen's kappa on the lesions both read: "
             "quadratic-weighted on the ordinal scores (categories "
             f"{', '.join(fmt(c) if not isinstance(c, float) else f'{c:g}' for c in a['score_categories'])}), "
             "unweighted on the calls. Lesions of one patient are treated as independent here.")
    rows = []
    for what in ("call", "score"):
        f = a[f"fleiss_{what}"]
        rows.append([f"{what}s (unordered categories)", _interval(f, "kappa"), fmt_p(f.get("p_value")),
                     fmt(f.get("n_subjects")), fmt(f.get("n_raters"))])
    doc.table(["Fleiss' kappa on", f"kappa ({level} CI)", "p", "lesions", "readers"], rows)
    doc.table(["readers", "lesions", f"weighted kappa, scores ({level} CI)", f"kappa, calls ({level} CI)"],
              [[f"{p['reader_a']} – {p['reader_b']}", fmt(p["n_lesions"]), _interval(p["score_quadratic"], "kappa"),
                _interval(p["call_unweighted"], "kappa")] for p in a["pairwise"]])


def render_calibration(doc: Document, c: dict, level: str, figure: str | None):
    doc.heading(2, "6. Calibration of the model")
    doc.para("Brier score (lower is better; 'prevalence only' = predicting the pCR rate for every lesion). "
             "Logistic recalibration logit P(pCR) = a + b·logit(p): calibration-in-the-large (ideal 0; > 0 "
             "means predictions too low on average) and slope (ideal 1; < 1 means predictions too extreme). "
             f"Wald {level} intervals; lesions treated as independent. Reliability points: quantile bins "
             "with Wilson intervals.")
    fit = c["recalibration"]
    if fit.get("available"):
        row = [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), _coefficient(fit, "intercept"),
               _coefficient(fit, "slope"), "yes" if fit["converged"] else "no"]
    else:
        row = [fmt(c["brier"]), fmt(c["brier_prevalence_only"]), "n/a", "n/a", "–"]
    doc.table(["Brier", "Brier, prevalence only", "calibration intercept", "calibration slope", "fit converged"],
              [row])
    doc.table(["P(pCR) bin", "lesions", "mean predicted", f"observed pCR ({level} CI)"],
              [[f"{fmt(b['bin_low'], 2)}–{fmt(b['bin_high'], 2)}", fmt(b["count"]), fmt(b["mean_predicted"]),
                fmt_ci(b["observed_fraction"], b["ci_low"], b["ci_high"])] for b in c["reliability"]])
    if figure:
        doc.image(figure, "Reliability diagram and histogram of predictions")


def _coefficient(fit: dict, name: str) -> str:
    return fmt_ci(fit[name], fit[f"{name}_ci_low"], fit[f"{name}_ci_high"]) + f" SE {fmt(fit[f'{name}_se'])}"


def render_decision(doc: Document, d: dict, figure: str | None):
    doc.heading(2, "7. Decision curves")
    doc.para("Decision: LEAVE a lesion in place when its P(pCR) ≥ pt, otherwise resect it. 'Treat' = leave, so "
             "'leave all' is treat-all and 'resect all' is treat-none (net benefit 0). Net benefit = "
             "TP/n − FP/n · pt/(1 − pt), TP = pCR lesions left in place (resections spared), FP = lesions with "
             "viable tumour left in place; pt/(1 − pt) is how many unnecessary resections one would accept to "
             "avoid leaving one viable lesion (pt = 0.8: four). In this framing net benefit equals the net "
             "number of resections avoided per lesion compared with 'resect all' (×100: per 100 lesions). "
             "Readers' calls are fixed strategies (leave what they call complete response). 'Net viable not "
             "left vs leave all' = (NB − NB_leave_all)·(1 − pt)/pt: lesions with viable tumour kept from "
             "being left in place, net of unnecessary resections, per lesion, compared with 'leave all'.")
    if not d.get("available"):
        doc.para(f"Not shown: {d['reason']}.")
        return
    doc.para(f"{d['n_lesions']} lesions (read by every reader; {d['n_lesions_not_read_by_all']} evaluated lesions "
             "left out of this comparison).", note=True)
    curve = pd.DataFrame(d["curve"])
    nb = curve.pivot(index="threshold", columns="strategy", values="net_benefit")
    order = [s for s in dict.fromkeys(curve.strategy)]
    doc.table(["pt"] + [f"NB {s}" for s in order] + ["net viable not left vs leave all, model"],
              [[fmt(t, 2)] + [fmt(nb.loc[t, s]) for s in order] +
               [fmt(curve[(curve.strategy == MODEL) & (curve.threshold == t)].net_viable_not_left_vs_leave_all.iloc[0])]
               for t in nb.index])
    if figure:
        doc.image(figure, "Decision curve")


def render_patient_level(doc: Document, p: dict, level: str):
    doc.heading(2, "8. Patient level")
    doc.para("One row per patient, over the patient's evaluated lesions. Events: 'all_pcr' = "
             f"{EVENT_TEXT['all_pcr']} (the patient could keep every lesion; the patient-level pCR), "
             f"'any_pcr' = {EVENT_TEXT['any_pcr']}. Model: min (least likely lesion) and product (independent "
             "lesions) estimate all_pcr; max and noisy-OR estimate any_pcr. Readers: lowest lesion score for "
             "all_pcr, highest for any_pcr, on patients whose every evaluated lesion they read. Patients are "
             f"independent, so DeLong and the ordinary bootstrap apply ({level} intervals).")
    doc.table(["method", "event", "patients", "events / non-events", "AUC (DeLong CI)", "bootstrap CI",
               "patients not fully read"],
              [[m["method"], m["event"], fmt(m["n_patients"]), f"{m['n_events']} / {m['n_non_events']}",
                _interval(m["delong"], "auc"), _interval(m["bootstrap"], "estimate"),
                fmt(m.get("n_patients_not_fully_read"))] for m in p["methods"]])
    if p["comparisons"]:
        rows = []
        for c in p["comparisons"]:
            t = c["delong"]
            rows.append([f"model (min) vs reader {c['reader']} (min score)", fmt(c["n_patients"])] +
                        ([fmt(t["auc_a"]), fmt(t["auc_b"]), fmt_ci(t["diff"], t["ci_low"], t["ci_high"]),
                          fmt_p(t["p_value"])] if t.get("available") else ["n/a"] * 4))
        doc.table(["all_pcr, paired DeLong", "patients", "AUC model", "AUC reader", f"difference ({level} CI)", "p"],
                  rows)


def render(sections: dict, figures: dict, alpha: float) -> Document:
    """The whole report as a :class:`Document`."""
    level = f"{100 * (1 - alpha):g}%"
    doc = Document()
    doc.heading(1, "pCR evaluation report: model vs readers")
    doc.para("Unit of prediction: a lesion; unit of independence: a patient. Positive class: pathological "
             "complete response (pCR, no viable tumour); a call of 1 means 'read as complete response'. "
             "The model's predictions are out-of-fold.")
    render_counts(doc, sections["counts"])
    render_discrimination(doc, sections["discrimination"], level, figures.get("roc"))
    render_comparisons(doc, sections["comparisons"], level)
    render_mrmc(doc, sections["mrmc"], level)
    render_operating_points(doc, sections["operating_points"], level)
    render_agreement(doc, sections["agreement"], level)
    render_calibration(doc, sections["calibration"], level, figures.get("calibration"))
    render_decision(doc, sections["decision_curve"], figures.get("decision_curve"))
    render_patient_level(doc, sections["patient_level"], level)
    notes: list[str] = []
    for name, section in sections.items():
        _reasons(section, name, notes)
    doc.heading(2, "Notes: statistics not available, warnings")
    doc.bullets(notes or ["none"])
    return doc


# =========================================================================== figures
def draw_figures(predictions: pd.DataFrame, sections: dict, out_dir: Path) -> dict[str, Path]:
    """ROC with band and operating points, calibration, decision curve (where defined)."""
    from dlm_ml.evaluation import figures as plots

    figures = {}
    if predictions.pcr.nunique() == 2:
        readers, matched = [], []
        for op in sections["operating_points"]:
            for target, key in ((readers, "reader_calls"), (matched, "model_matched")):
                m = op.get(key)
                if m and m.get("available", True) and m["sensitivity"]["n"] and m["specificity"]["n"]:
                    target.append((op["reader"], 1 - m["specificity"]["estimate"], m["sensitivity"]["estimate"]))
        band = sections["roc_band"]
        level = f"{100 * (1 - band.get('alpha', 0.05)):g}%"
        band_arg = ((band["fpr"], band["tpr_low"], band["tpr_high"], f"{level} pointwise band (patient bootstrap)")
                    if band.get("available") else None)
        figures["roc"] = plots.roc_with_readers(predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy(), readers,
                                                out_dir / "roc.png", band=band_arg, matched=matched)
    cal = sections["calibration"]
    if len(predictions):
        fit = cal["recalibration"]
        recal = (fit["slope_model_intercept"], fit["slope"]) if fit.get("available") else None
        figures["calibration"] = plots.calibration_plot(
            pd.DataFrame(cal["reliability"]), predictions.prob_pcr.to_numpy(), predictions.pcr.to_numpy(),
            out_dir / "calibration.png", recalibration=recal)
    dc = sections["decision_curve"]
    if dc.get("available"):
        figures["decision_curve"] = plots.decision_curve_plot(pd.DataFrame(dc["curve"]), out_dir / "decision_curve.png",
                                                              references=(LEAVE_ALL, RESECT_ALL),
                                                              groups=dc["strategy_groups"])
    return figures


# =========================================================================== entry point
def compute_sections(predictions, readings, thresholds, counts, *, n_boot, seed, alpha) -> dict:
    """Every number of the report, by section (pandas frames still as frames)."""
    readers = reader_ids(readings)
    band = roc_band(predictions, n_boot=n_boot, seed=seed, alpha=alpha) if predictions.pcr.nunique() == 2 else \
        _unavailable("one outcome class only")
    return {
        "counts": coverage(counts, predictions, readings, readers),
        "discrimination": discrimination(predictions, readings, readers, n_boot=n_boot, seed=seed, alpha=alpha),
        "roc_band": {**band, "alpha": alpha},
        "comparisons": comparisons(predictions, readings, readers, alpha=alpha),
        "mrmc": mrmc_section(predictions, readings, readers, alpha=alpha),
        "operating_points": operating_points(predictions, readings, readers, thresholds, n_boot=n_boot, seed=seed,
                                             alpha=alpha),
        "agreement": agreement(predictions, readings, readers, alpha=alpha),
        "calibration": calibration(predictions, alpha=alpha),
        "decision_curve": decision(predictions, readings, readers, thresholds),
        "patient_level": patient_level(predictions, readings, readers, n_boot=n_boot, seed=seed, alpha=alpha),
    }


def build_report(predictions: pd.DataFrame, readings: pd.DataFrame, thresholds: pd.DataFrame | None, counts: dict,
                 out_dir: str | Path, *, n_boot: int, seed: int, alpha: float = 0.05) -> Report:
    """Compute, render and write the full evaluation report.

    Parameters
    ----------
    predictions : DataFrame
        Evaluated lesions: ``patient_id, lesion_id, fold, prob_pcr, pcr`` (outcomes from the cohort).
    readings : DataFrame
        ``reader_id, patient_id, lesion_id, score, call`` (score: higher = complete response more
        likely; call 1 = read as complete response).
    thresholds : DataFrame or None
        ``fold, reader_id, threshold`` (per fold, matched to the reader on training-side validation
        lesions); None: the model's matched operating points are reported as not available.
    counts : dict
        Coverage counts (:func:`dlm_ml.evaluation.evaluate.coverage_counts`), shown first.
    out_dir : path
        Receives report.md, report.html, report.json, roc.png, calibration.png, decision_curve.png.
    n_boot, seed : int
        Patient-bootstrap replicates and seed.
    alpha : float
        1 − confidence level of every interval.

    Returns
    -------
    Report
    """
    from dlm_ml.utils.atomic import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    readings = readings.assign(reader_id=readings.reader_id.astype(str))
    if thresholds is not None:
        thresholds = thresholds.assign(reader_id=thresholds.reader_id.astype(str))
    sections = jsonable(compute_sections(predictions, readings, thresholds, counts, n_boot=n_boot, seed=seed,
                                         alpha=alpha))
    figure_paths = draw_figures(predictions, sections, out_dir)
    doc = render(sections, {k: p.name for k, p in figure_paths.items()}, alpha)
    markdown = doc.markdown()
    files = [atomic_write_text(out_dir / "report.md", markdown),
             atomic_write_text(out_dir / "report.html", doc.html("pCR evaluation report")),
             atomic_write_text(out_dir / "report.json", json.dumps(sections, indent=1, allow_nan=False)),
             *figure_paths.values()]
    return Report(sections=sections, markdown=markdown, files=files)


def headline_metrics(sections: dict) -> dict:
    """A few flat numbers of the report for MLflow (finite values only)."""
    out = {}
    for c in sections["comparisons"]:
        for test in ("delong", "obuchowski"):
            if c[test].get("available"):
                out[f"{test}_p_vs_{c['reader']}"] = c[test]["p_value"]
                out[f"{test}_diff_vs_{c['reader']}"] = c[test]["diff"]
    for op in sections["operating_points"]:
        if op.get("mcnemar", {}).get("available"):
            out[f"mcnemar_p_vs_{op['reader']}"] = op["mcnemar"]["p_value"]
    m = sections["mrmc"]
    if m.get("available"):
        out["mrmc_p"] = m["rrrc"]["p_value"]
        out["mrmc_auc_diff"] = m["rrrc"]["difference"]["estimate"]
    cal = sections["calibration"]
    out["brier"] = cal["brier"]
    if cal["recalibration"].get("available"):
        out["calibration_intercept"] = cal["recalibration"]["intercept"]
        out["calibration_slope"] = cal["recalibration"]["slope"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}
