"""Report sections on discrimination: AUC of the model and each reader, the ROC band, the paired
model-vs-reader tests and the multi-reader multi-case analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.evaluation.sections.common import (
    MODEL,
    _sizes,
    attempt,
    paired,
    read_by_all,
    unavailable,
)
from dlm_ml.evaluation.settings import EvaluationSettings


def auc_summary(name: str, frame: pd.DataFrame, score: str, settings: EvaluationSettings,
                resamples: stats.ClusterResamples | None = None) -> dict:
    """AUC of one score with three intervals: DeLong (lesions independent), Obuchowski
    (patients as clusters) and the patient bootstrap (over the evaluation's shared
    ``resamples``; None: drawn here from the settings' seed)."""
    truth, values, patients = frame.pcr.to_numpy(), frame[score].to_numpy(float), frame.patient_id.to_numpy()
    row = {"method": name, **_sizes(frame)}
    if frame.pcr.nunique() < 2:
        reason = "one outcome class only among these lesions: AUC undefined"
        return {**row, **{k: unavailable(reason) for k in ("delong", "obuchowski", "bootstrap")}}
    alpha = settings.alpha
    row["delong"] = attempt(stats.delong_auc_ci, truth, values, alpha=alpha)
    row["obuchowski"] = attempt(stats.clustered_auc, truth, values, patients, alpha=alpha)
    row["bootstrap"] = attempt(stats.cluster_bootstrap_auc, truth, values, patients, n_boot=settings.n_boot,
                               alpha=alpha, seed=settings.seed, resamples=resamples)
    return row


def discrimination(predictions, readings, readers, settings: EvaluationSettings,
                   resamples: stats.ClusterResamples | None = None) -> list[dict]:
    """Section 1: the model on all evaluated lesions, each reader (by score) on the lesions read."""
    rows = [auc_summary(MODEL, predictions, "prob_pcr", settings, resamples)]
    for r in readers:
        rows.append({**auc_summary(f"reader {r}", paired(predictions, readings, r), "score", settings, resamples),
                     "reader": r})
    return rows


def roc_band(predictions: pd.DataFrame, settings: EvaluationSettings,
             resamples: stats.ClusterResamples | None = None) -> dict:
    """The model's pointwise patient-bootstrap ROC band (:func:`dlm_ml.stats.roc_band`)."""
    if predictions.pcr.nunique() < 2:
        return {**unavailable("one outcome class only"), "alpha": settings.alpha}
    band = attempt(stats.roc_band, predictions.pcr.to_numpy(), predictions.prob_pcr.to_numpy(),
                   predictions.patient_id.to_numpy(), n_boot=settings.n_boot, alpha=settings.alpha,
                   seed=settings.seed, resamples=resamples)
    return {**band, "alpha": settings.alpha}

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
