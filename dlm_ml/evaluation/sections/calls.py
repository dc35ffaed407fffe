"""Report sections on binary calls: the model at each reader-matched threshold against the reader
(sensitivity, specificity, PPV, NPV, McNemar), and agreement between readers and model."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from dlm_ml import stats
from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.sections.common import (
    PROPORTIONS,
    _sizes,
    attempt,
    matched_model_calls,
    paired,
    read_by_all,
    unavailable,
)
from dlm_ml.evaluation.settings import EvaluationSettings


def call_metrics(frame: pd.DataFrame, call: np.ndarray, settings: EvaluationSettings,
                 resamples: stats.ClusterResamples | None = None) -> dict:
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
                                           n_boot=settings.n_boot, alpha=settings.alpha, seed=settings.seed,
                                           resamples=resamples)
    return out


def operating_point(frame, reader, thresholds, settings: EvaluationSettings,
                    resamples: stats.ClusterResamples | None = None) -> dict:
    """One reader's calls, the model at the threshold matched to that reader, McNemar."""
    row = {"reader": reader, **_sizes(frame)}
    if not len(frame):
        return {**row, **unavailable("this reader read none of the evaluated lesions")}
    reader_call = frame.call.to_numpy(int)
    row["reader_calls"] = call_metrics(frame, reader_call, settings, resamples)
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
    row["model_matched"] = {"available": True, "thresholds": per_fold,
                            **call_metrics(frame, model_call, settings, resamples)}
    row["mcnemar"] = attempt(stats.mcnemar_test, model_call, reader_call, exact=True)
    return row


def operating_points(predictions, readings, readers, thresholds, settings: EvaluationSettings,
                     resamples: stats.ClusterResamples | None = None) -> list[dict]:
    """Section 4."""
    return [operating_point(paired(predictions, readings, r), r, thresholds, settings, resamples) for r in readers]

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
