"""Report sections on the probabilities themselves: calibration (before and after post-hoc
recalibration when the predictions carry both), decision curves against the "leave all" /
"resect all" policies and the clinical "disappeared => leave" policy, and the patient-level
analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.sections.common import (
    DISAPPEARED_LEAVE,
    LEAVE_ALL,
    MODEL,
    PATIENT_METHODS_ORDER,
    READER_PATIENT_AGGREGATE,
    RESECT_ALL,
    attempt,
    matched_model_calls,
    paired,
    read_by_all,
    unavailable,
)
from dlm_ml.evaluation.sections.discrimination import auc_summary
from dlm_ml.evaluation.settings import EvaluationSettings


def calibration(predictions: pd.DataFrame, settings: EvaluationSettings) -> dict:
    """Section 6: Brier score (with the no-skill reference), logistic recalibration with Wald
    intervals, reliability — of ``prob_pcr``; and, when the predictions carry
    ``prob_pcr_uncalibrated`` (the probability before post-hoc recalibration), the same numbers of
    that column under ``uncalibrated``."""
    truth = predictions.pcr.to_numpy()
    out = _calibration_of(truth, predictions.prob_pcr.to_numpy(float), settings)
    column = schema.UNCALIBRATED_PROB
    if column in predictions.columns:
        before = predictions[column].to_numpy(float)
        missing = int(np.isnan(before).sum())
        out["uncalibrated"] = ({"column": column, **_calibration_of(truth, before, settings)} if not missing else
                               {"column": column, **unavailable(f"{missing} evaluated lesion(s) have no {column}")})
    return out


def _calibration_of(truth: np.ndarray, prob: np.ndarray, settings: EvaluationSettings) -> dict:
    """Brier, recalibration intercept/slope with Wald intervals and reliability of one
    probability column (``truth``, ``prob``: [n_lesions])."""
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

def disappeared_policy(predictions: pd.DataFrame, frame: pd.DataFrame) -> tuple[dict, np.ndarray | None]:
    """The clinical default policy "disappeared => leave in place, seen => resect" as fixed calls
    on ``frame`` (1 = leave: ``diameter_presurgery_mm`` is 0), or why it cannot be drawn.

    It is drawn only when every evaluated lesion (``predictions``) has the measurement: the policy
    is undefined for a lesion nobody measured at presurgery, and a curve over a subset would not
    be comparable with the model's. Returns (section info, calls [len(frame)] or None).
    """
    column = schema.DIAMETER_PRESURGERY
    info = {"label": DISAPPEARED_LEAVE, "column": column}
    if column not in predictions.columns:
        return {**info, **unavailable(f"the cohort records no {column} in lesions.csv")}, None
    missing = int(predictions[column].isna().sum())
    if missing:
        return {**info, "n_lesions_missing": missing,
                **unavailable(f"{missing} of {len(predictions)} evaluated lesions have no {column} recorded; the "
                              "policy is drawn only when every evaluated lesion has it")}, None
    leave = frame[column].to_numpy(float) == 0
    return {**info, "available": True, "n_lesions": int(len(frame)), "n_disappeared": int(leave.sum())}, \
        leave.astype(float)


def decision(predictions, readings, readers, thresholds, settings: EvaluationSettings) -> dict:
    """Section 7: net benefit of leaving a lesion in place when P(pCR) ≥ pt.

    "Treat" = leave in place, so ``truth = pcr``, ``prob = prob_pcr``, "leave all" is treat all
    and "resect all" is treat none (net benefit 0). Readers' calls are fixed strategies (leave
    what they call complete response), as is the clinical policy "disappeared => leave"
    (:func:`disappeared_policy`; its net benefit per threshold is under ``policy``). With
    readers, all strategies are compared on the lesions every reader read, so that the curves
    share one denominator.
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
    policy, policy_calls = disappeared_policy(predictions, frame)
    if policy_calls is not None:
        strategies[DISAPPEARED_LEAVE] = policy_calls
        groups[DISAPPEARED_LEAVE] = (DISAPPEARED_LEAVE, "policy")
    grid = settings.threshold_grid
    out = {"n_lesions": int(len(frame)), "n_lesions_not_read_by_all": int(len(predictions) - len(frame)),
           "thresholds": grid, "treat": "leave the lesion in place",
           "treat_all": LEAVE_ALL, "treat_none": RESECT_ALL, "strategy_groups": groups, "policy": policy}
    if not len(frame):
        return {**out, **unavailable("no lesion read by every reader")}
    curve = stats.decision_curve(frame.pcr.to_numpy(), strategies, grid, treat_all_label=LEAVE_ALL,
                                 treat_none_label=RESECT_ALL)
    # Net benefit in this framing equals net resections avoided per lesion against "resect
    # all"; decision_curve's net_interventions_avoided is measured against "leave all", i.e.
    # net lesions with viable tumour kept from being left in place.
    curve = curve.rename(columns={"net_interventions_avoided": "net_viable_not_left_vs_leave_all"})
    if policy_calls is not None:
        policy["net_benefit"] = curve[curve.strategy == DISAPPEARED_LEAVE][["threshold", "net_benefit", "tp", "fp",
                                                                            "n"]].reset_index(drop=True)
    return {**out, "available": True, "curve": curve}

def patient_level(predictions, readings, readers, settings: EvaluationSettings,
                  resamples: stats.ClusterResamples | None = None) -> dict:
    """Section 8: one row per patient; model by each aggregation, readers by min/max score,
    patient-level DeLong (patients are independent) and bootstrap CIs, model vs reader."""
    out = {"n_patients": int(predictions.patient_id.nunique()), "methods": [], "comparisons": []}
    model = {}
    for method in PATIENT_METHODS_ORDER:
        agg = stats.aggregate_to_patient(predictions.patient_id.to_numpy(), predictions.pcr.to_numpy(),
                                         predictions.prob_pcr.to_numpy(), method=method)
        model[method] = agg
        row = auc_summary(f"model ({method})", agg.rename(columns={"truth": "pcr"}), "prob", settings, resamples)
        out["methods"].append({**_patient_sizes(row), "event": stats.PATIENT_METHODS[method]})
    for r in readers:
        scores = _reader_patient_scores(predictions, readings, r)
        for event, how in READER_PATIENT_AGGREGATE.items():
            row = auc_summary(f"reader {r} ({how} score)", scores[event], "score", settings, resamples)
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
