"""The numbers of the evaluation report, by section: computations on plain tables that call
:mod:`dlm_ml.stats` and return structured dicts (no rendering, no files).

All lesion-level statistics treat the patient as the unit of independence where the method
allows it (Obuchowski's clustered variance, patient bootstrap, MRMC with patient clusters);
DeLong, Wilson and McNemar treat lesions as independent and are shown next to the clustered
figures so that the effect of clustering is visible. A statistic that is undefined on the data
at hand (e.g. one class only among a reader's lesions) is ``{"available": False, "reason": ...}``,
never dropped silently.

Positive class: pCR (no viable tumour). A reader's call 1 and a model call 1 both mean "called
complete response" (a candidate to be left in place); so PPV = P(pCR | called complete response).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import combinations

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.settings import EvaluationSettings
from dlm_ml.evaluation.thresholds import apply_thresholds

MODEL = "model"
PATIENT_METHODS_ORDER = ("min", "product", "max", "noisy_or")
# Readers give ordinal scores, not probabilities: a patient's score for "all lesions pCR"
# is the lowest lesion score (the least convincing lesion), for "any lesion pCR" the highest.
READER_PATIENT_AGGREGATE = {"all_pcr": "min", "any_pcr": "max"}
LEAVE_ALL, RESECT_ALL = "leave all", "resect all"
PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv")


# =========================================================================== helpers
def attempt(compute: Callable, *args, **kwargs) -> dict:
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


def unavailable(reason: str) -> dict:
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
    """Model calls at each fold's threshold matched to ``reader`` (see :func:`apply_thresholds`)."""
    return apply_thresholds(frame, thresholds.assign(reader_id=thresholds.reader_id.astype(str)), reader)


# =========================================================================== 1. discrimination
def auc_summary(name: str, frame: pd.DataFrame, score: str, settings: EvaluationSettings) -> dict:
    """AUC of one score with three intervals: DeLong (lesions independent), Obuchowski
    (patients as clusters) and the patient bootstrap."""
    truth, values, patients = frame.pcr.to_numpy(), frame[score].to_numpy(float), frame.patient_id.to_numpy()
    row = {"method": name, **_sizes(frame)}
    if frame.pcr.nunique() < 2:
        reason = "one outcome class only among these lesions: AUC undefined"
        return {**row, **{k: unavailable(reason) for k in ("delong", "obuchowski", "bootstrap")}}
    alpha = settings.alpha
    row["delong"] = attempt(stats.delong_auc_ci, truth, values, alpha=alpha)
    row["obuchowski"] = attempt(stats.clustered_auc, truth, values, patients, alpha=alpha)
    row["bootstrap"] = attempt(stats.cluster_bootstrap_auc, truth, values, patients, n_boot=settings.n_boot,
                               alpha=alpha, seed=settings.seed)
    return row


def discrimination(predictions, readings, readers, settings: EvaluationSettings) -> list[dict]:
    """Section 1: the model on all evaluated lesions, each reader (by score) on the lesions read."""
    rows = [auc_summary(MODEL, predictions, "prob_pcr", settings)]
    for r in readers:
        rows.append({**auc_summary(f"reader {r}", paired(predictions, readings, r), "score", settings), "reader": r})
    return rows


def roc_band(predictions: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """The model's pointwise patient-bootstrap ROC band (:func:`dlm_ml.stats.roc_band`)."""
    if predictions.pcr.nunique() < 2:
        return {**unavailable("one outcome class only"), "alpha": settings.alpha}
    band = attempt(stats.roc_band, predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy(),
                   predictions.patient_id.to_numpy(), n_boot=settings.n_boot, alpha=settings.alpha,
                   seed=settings.seed)
    return {**band, "alpha": settings.alpha}


# =========================================================================== 2. model vs each reader
def model_vs_reader(frame: pd.DataFrame, reader: str, settings: EvaluationSettings) -> dict:
    """Paired AUC difference model − reader on the lesions both have: DeLong and Obuchowski."""
    row = {"reader": reader, **_sizes(frame)}
    if frame.pcr.nunique() < 2:
        reason = "one outcome class only among the lesions this reader read"
        return {**row, "delong": unavailable(reason), "obuchowski": unavailable(reason)}
    truth, prob, score = frame.pcr.to_numpy(), frame.prob_pcr.to_numpy(), frame.score.to_numpy(float)
    row["delong"] = attempt(stats.delong_test, truth, prob, score, alpha=settings.alpha)
    row["obuchowski"] = attempt(stats.clustered_auc_difference, truth, prob, score, frame.patient_id.to_numpy(),
                                alpha=settings.alpha)
    return row


def comparisons(predictions, readings, readers, settings: EvaluationSettings) -> list[dict]:
    """Section 2."""
    return [model_vs_reader(paired(predictions, readings, r), r, settings) for r in readers]


# =========================================================================== 3. MRMC
def mrmc_section(predictions, readings, readers, settings: EvaluationSettings) -> dict:
    """Section 3: model vs the readers as a group (Obuchowski–Rockette, Hillis df), patients as
    clusters, on the lesions every reader read (the analysis needs a fully crossed design)."""
    if len(readers) < 2:
        return unavailable(f"{len(readers)} reader(s): a random-reader analysis needs at least 2 readers "
                           "(the comparison with a single reader is in 'model vs each reader')")
    common = read_by_all(predictions, readings, readers)
    info = {"n_lesions_used": int(len(common)), "n_patients_used": int(common.patient_id.nunique()),
            "n_lesions_not_read_by_all": int(len(predictions) - len(common))}
    if common.pcr.nunique() < 2:
        return {**info, **unavailable("one outcome class only among the lesions read by every reader")}
    cases = common.assign(case=np.arange(len(common)))
    model_scores = cases[["case", "pcr", "prob_pcr", "patient_id"]]
    long = pd.concat([cases[["case"]].assign(reader=r, rating=cases[f"score_{r}"].to_numpy(float))
                      for r in readers], ignore_index=True)
    res = attempt(lambda: {"result": stats.model_vs_readers(model_scores, long, truth="pcr", prob="prob_pcr",
                                                            cluster="patient_id", model_label=MODEL,
                                                            alpha=settings.alpha)})
    if not res["available"]:
        return {**info, **res}
    result = res.pop("result")
    return {**info, **res, "cov_method": result.cov_method, "n_clusters": result.n_clusters,
            "rrrc": _analysis_summary(result.rrrc), "frrc": _analysis_summary(result.frrc),
            "reader_aucs": result.aucs}


def _analysis_summary(analysis) -> dict:
    """The numbers of one OR analysis a reader of the report needs.

    Infinite degrees of freedom (a normal reference, e.g. a test whose reader mean square is
    0, as the model's is) are flagged, since JSON turns them into null like undefined ones;
    a huge Hillis df comes with the analysis' note saying why.
    """
    def flag(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(df_infinite=np.isinf(table.df.to_numpy(float)))

    df2 = analysis.df2
    return {"description": analysis.description, "statistic_name": analysis.statistic_name,
            "statistic": analysis.statistic, "df1": analysis.df1, "df2": df2,
            "df2_infinite": df2 is not None and bool(np.isinf(df2)), "p_value": analysis.p_value,
            "note": analysis.note, "difference": flag(analysis.differences).to_dict(orient="records")[0],
            "tests": flag(analysis.tests)}


# =========================================================================== 4. operating points
def call_metrics(frame: pd.DataFrame, call: np.ndarray, settings: EvaluationSettings) -> dict:
    """Sensitivity, specificity, PPV, NPV (Wilson, lesions independent) with patient-bootstrap
    intervals of each, and the share of lesions called complete response that hold viable
    tumour (1 − PPV)."""
    truth, patients, call = frame.pcr.to_numpy(), frame.patient_id.to_numpy(), np.asarray(call)
    m = stats.diagnostic_metrics(truth, call, alpha=settings.alpha).to_dict()
    c = m["counts"]
    out = {k: m[k] for k in (*PROPORTIONS, "counts")}
    # The clinically critical error: a lesion left in place because it was called complete
    # response, yet it holds viable tumour (= 1 − PPV, with its own Wilson interval).
    out["viable_among_called_cr"] = stats.proportion_ci(c["fp"], c["tp"] + c["fp"], alpha=settings.alpha).to_dict()
    for name in PROPORTIONS:
        out[f"{name}_bootstrap"] = attempt(stats.cluster_bootstrap_proportion, truth, call, patients, metric=name,
                                           n_boot=settings.n_boot, alpha=settings.alpha, seed=settings.seed)
    return out


def operating_point(frame, reader, thresholds, settings: EvaluationSettings) -> dict:
    """One reader's calls, the model at the threshold matched to that reader, McNemar."""
    row = {"reader": reader, **_sizes(frame)}
    if not len(frame):
        return {**row, **unavailable("this reader read none of the evaluated lesions")}
    reader_call = frame.call.to_numpy(int)
    row["reader_calls"] = call_metrics(frame, reader_call, settings)
    if thresholds is None:
        row["model_matched"] = unavailable("no thresholds given (a bare predictions file): the model's "
                                           "reader-matched operating points need the per-fold thresholds "
                                           "chosen on training-side validation lesions")
        return row
    try:
        model_call = matched_model_calls(frame, thresholds, reader)
    except ValueError as exc:
        row["model_matched"] = unavailable(str(exc))
        return row
    per_fold = thresholds[thresholds.reader_id.astype(str) == reader].drop(columns="reader_id")
    # An infinite threshold (no lesion called complete response) becomes null in JSON: say so.
    per_fold = per_fold.assign(no_lesion_called_cr=np.isinf(per_fold.threshold.to_numpy(float)))
    row["model_matched"] = {"available": True, "thresholds": per_fold, **call_metrics(frame, model_call, settings)}
    row["mcnemar"] = attempt(stats.mcnemar_test, model_call, reader_call, exact=True)
    return row


def operating_points(predictions, readings, readers, thresholds, settings: EvaluationSettings) -> list[dict]:
    """Section 4."""
    return [operating_point(paired(predictions, readings, r), r, thresholds, settings) for r in readers]


# =========================================================================== 5. agreement
def agreement(predictions, readings, readers, settings: EvaluationSettings) -> dict:
    """Section 5: Fleiss' kappa over all readers (lesions read by all), pairwise Cohen's kappa
    (lesions both read): quadratic-weighted on scores, unweighted on calls."""
    if len(readers) < 2:
        return unavailable(f"{len(readers)} reader(s): agreement needs at least 2 readers")
    # Weighted kappa depends on category positions: use every score any reader gave.
    categories = sorted(readings.score.unique().tolist())
    common = read_by_all(predictions, readings, readers)
    out = {"available": True, "score_categories": categories, "n_lesions_read_by_all": int(len(common))}
    for what in ("call", "score"):
        long = pd.concat([pd.DataFrame({"subject": np.arange(len(common)), "rater": r,
                                        "rating": common[f"{what}_{r}"].to_numpy()}) for r in readers])
        out[f"fleiss_{what}"] = attempt(stats.fleiss_kappa, long, alpha=settings.alpha)
    key = list(schema.LESION_KEY)
    pairs = []
    for a, b in combinations(readers, 2):
        both = paired(predictions, readings, a).merge(paired(predictions, readings, b)[key + ["score", "call"]],
                                                      on=key, suffixes=("_a", "_b"))
        pairs.append({"reader_a": a, "reader_b": b, "n_lesions": int(len(both)),
                      "score_quadratic": attempt(stats.cohen_kappa, both.score_a.to_numpy(), both.score_b.to_numpy(),
                                                 weights="quadratic", categories=categories, alpha=settings.alpha),
                      "call_unweighted": attempt(stats.cohen_kappa, both.call_a.to_numpy(), both.call_b.to_numpy(),
                                                 categories=[0, 1], alpha=settings.alpha)})
    out["pairwise"] = pairs
    return out


# =========================================================================== 6. calibration
def calibration(predictions: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """Section 6: Brier score (with the no-skill reference), logistic recalibration with Wald
    intervals, reliability."""
    truth, prob = predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy()
    prevalence = float(truth.mean())
    out = {"n_lesions": int(len(truth)), "brier": stats.brier_score(truth, prob),
           # Constant prediction of the prevalence: a model must beat this to carry information.
           "brier_prevalence_only": prevalence * (1 - prevalence), "prevalence": prevalence}
    if len(np.unique(truth)) < 2:
        out["recalibration"] = unavailable("one outcome class only: calibration intercept/slope undefined")
    else:
        fit = attempt(stats.calibration_intercept_slope, truth, prob)
        if fit["available"]:
            for name in ("intercept", "slope"):
                se = fit[f"{name}_se"]
                low, high = stats.wald_interval(fit[name], np.nan if se is None else se, alpha=settings.alpha)
                fit.update({f"{name}_ci_low": low, f"{name}_ci_high": high})
        out["recalibration"] = fit
    out["reliability"] = stats.reliability_curve(truth, prob, n_bins=settings.reliability_bins, strategy="quantile",
                                                 alpha=settings.alpha)
    return out


# =========================================================================== 7. decision curves
def decision(predictions, readings, readers, thresholds, settings: EvaluationSettings) -> dict:
    """Section 7: net benefit of leaving a lesion in place when P(pCR) ≥ pt.

    "Treat" = leave in place, so ``truth = pcr``, ``prob = prob_pcr``, "leave all" is treat all
    and "resect all" is treat none (net benefit 0). Readers' calls are fixed strategies (leave
    what they call complete response). With readers, all strategies are compared on the lesions
    every reader read, so that the curves share one denominator.
    """
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
    grid = settings.threshold_grid
    out = {"n_lesions": int(len(frame)), "n_lesions_not_read_by_all": int(len(predictions) - len(frame)),
           "thresholds": grid, "treat": "leave the lesion in place",
           "treat_all": LEAVE_ALL, "treat_none": RESECT_ALL, "strategy_groups": groups}
    if not len(frame):
        return {**out, **unavailable("no lesion read by every reader")}
    curve = stats.decision_curve(frame.pcr.to_numpy(), strategies, grid, treat_all_label=LEAVE_ALL,
                                 treat_none_label=RESECT_ALL)
    # Net benefit in this framing equals net resections avoided per lesion against "resect
    # all"; decision_curve's net_interventions_avoided is measured against "leave all", i.e.
    # net lesions with viable tumour kept from being left in place.
    curve = curve.rename(columns={"net_interventions_avoided": "net_viable_not_left_vs_leave_all"})
    return {**out, "available": True, "curve": curve}


# =========================================================================== 8. patient level
def patient_level(predictions, readings, readers, settings: EvaluationSettings) -> dict:
    """Section 8: one row per patient; model by each aggregation, readers by min/max score,
    patient-level DeLong (patients are independent) and bootstrap CIs, model vs reader."""
    out = {"n_patients": int(predictions.patient_id.nunique()), "methods": [], "comparisons": []}
    model = {}
    for method in PATIENT_METHODS_ORDER:
        agg = stats.aggregate_to_patient(predictions.patient_id.to_numpy(), predictions.pcr.to_numpy(),
                                         predictions.prob_pcr.to_numpy(), method=method)
        model[method] = agg
        row = auc_summary(f"model ({method})", agg.rename(columns={"truth": "pcr"}), "prob", settings)
        out["methods"].append({**_patient_sizes(row), "event": stats.PATIENT_METHODS[method]})
    for r in readers:
        scores = _reader_patient_scores(predictions, readings, r)
        for event, how in READER_PATIENT_AGGREGATE.items():
            row = auc_summary(f"reader {r} ({how} score)", scores[event], "score", settings)
            out["methods"].append({**_patient_sizes(row), "event": event,
                                   "n_patients_not_fully_read": scores["n_not_fully_read"]})
        primary = scores["all_pcr"].merge(model["min"][["patient_id", "prob"]], on="patient_id")
        cmp = {"reader": r, "event": "all_pcr", "model_method": "min", "reader_method": "min",
               "n_patients": int(len(primary))}
        cmp["delong"] = (attempt(stats.delong_test, primary.pcr.to_numpy(), primary.prob.to_numpy(),
                                 primary.score.to_numpy(float), alpha=settings.alpha)
                         if primary.pcr.nunique() == 2 else unavailable("one outcome class only"))
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


# =========================================================================== counts
def coverage(counts: dict, predictions, readings, readers) -> dict:
    """Shown first: what is in the cohort and what each analysis could use."""
    out = dict(counts)
    for r in readers:
        out[f"lesions_read_by_{r}"] = int(len(paired(predictions, readings, r)))
    if readers:
        out["lesions_read_by_all_readers"] = int(len(read_by_all(predictions, readings, readers)))
    return out


# =========================================================================== all
SECTION_NAMES = ("counts", "discrimination", "roc_band", "comparisons", "mrmc", "operating_points", "agreement",
                 "calibration", "decision_curve", "patient_level")


def compute_sections(predictions: pd.DataFrame, readings: pd.DataFrame, thresholds: pd.DataFrame | None,
                     counts: dict, settings: EvaluationSettings) -> dict:
    """Every number of the report, by section (pandas frames still as frames).

    ``predictions``: evaluated lesions ``patient_id, lesion_id, fold, prob_pcr, pcr``;
    ``readings``: ``reader_id, patient_id, lesion_id, score, call``; ``thresholds``: ``fold,
    reader_id, threshold`` or None; ``counts``: :func:`dlm_ml.evaluation.evaluate.coverage_counts`.
    """
    readings = readings.assign(reader_id=readings.reader_id.astype(str))
    if thresholds is not None:
        thresholds = thresholds.assign(reader_id=thresholds.reader_id.astype(str))
    readers = reader_ids(readings)
    return {
        "counts": coverage(counts, predictions, readings, readers),
        "discrimination": discrimination(predictions, readings, readers, settings),
        "roc_band": roc_band(predictions, settings),
        "comparisons": comparisons(predictions, readings, readers, settings),
        "mrmc": mrmc_section(predictions, readings, readers, settings),
        "operating_points": operating_points(predictions, readings, readers, thresholds, settings),
        "agreement": agreement(predictions, readings, readers, settings),
        "calibration": calibration(predictions, settings),
        "decision_curve": decision(predictions, readings, readers, thresholds, settings),
        "patient_level": patient_level(predictions, readings, readers, settings),
    }
