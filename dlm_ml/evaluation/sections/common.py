"""What every report section uses: the result convention for a statistic that may be undefined
on the data, the lesions each reader read, the constants of the report."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from dlm_ml.data.cohort import schema
from dlm_ml.evaluation.thresholds import apply_thresholds

MODEL = "model"
PATIENT_METHODS_ORDER = ("min", "product", "max", "noisy_or")
# Readers give ordinal scores, not probabilities: a patient's score for "all lesions pCR"
# is the lowest lesion score (the least convincing lesion), for "any lesion pCR" the highest.
READER_PATIENT_AGGREGATE = {"all_pcr": "min", "any_pcr": "max"}
LEAVE_ALL, RESECT_ALL = "leave all", "resect all"
# The clinical default policy as a fixed strategy of the decision curve: leave in place (treat as
# pCR) a lesion no longer seen at presurgery, resect every lesion still seen.
DISAPPEARED_LEAVE = "disappeared ⇒ leave"
PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv")


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
