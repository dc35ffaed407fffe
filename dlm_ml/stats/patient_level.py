"""Aggregate lesion-level predictions to one row per patient.

Patient-level events
--------------------
A lesion-level prediction is ``p_i = P(pCR of lesion i)``. Two patient-level
events are natural, and each aggregation method refers to one of them; the
patient-level ``truth`` follows the event, so that ``prob`` and ``truth``
always describe the same event:

``event = "all_pcr"`` — **every lesion of the patient has pCR** (the patient
is a complete responder; all lesions could be left in place). This is the
patient-level pCR of dlm_ml. ``truth = min(truth_i)``.

* ``"min"``: ``min p_i``, the probability of the least likely lesion. It
  equals P(all pCR) if lesion responses are perfectly positively dependent
  and is an upper bound of P(all pCR) in general (Fréchet), so it is the
  optimistic end; it ranks patients by their worst lesion.
* ``"product"``: ``Π p_i``, P(all pCR) if lesion responses are independent
  given the model. Patients with more lesions get lower values.

``event = "any_pcr"`` — **at least one lesion has pCR**. ``truth =
max(truth_i)``.

* ``"max"``: ``max p_i``, a lower bound of P(any pCR) (Fréchet), exact
  under perfect positive dependence.
* ``"noisy_or"``: ``1 − Π (1 − p_i)``, P(any pCR) under independence.

Relation to the residual-disease view: with ``r_i = 1 − p_i`` the risk of
viable tumour, the usual "max" / "noisy-OR" pooling of *risks* gives the
patient's risk of any viable tumour, which is ``1 −`` the "min" /
"product" value above. So pooling risks with max / noisy-OR is the same
ranking as "min" / "product" here, and an AUC of patient-level pCR should use
"min" or "product".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._validation import as_1d, check_binary, check_choice, check_probabilities, check_same_length

__all__ = ["aggregate_to_patient", "PATIENT_METHODS"]

#: method -> patient-level event it estimates
PATIENT_METHODS = {"min": "all_pcr", "product": "all_pcr", "max": "any_pcr", "noisy_or": "any_pcr"}


def aggregate_to_patient(patient_ids, truth, prob, *, method: str = "min") -> pd.DataFrame:
    """One row per patient with the aggregated truth and probability.

    Parameters
    ----------
    patient_ids : array-like, shape (n,)
        Patient of each lesion (no missing values).
    truth : array-like of 0/1, shape (n,)
        Lesion-level pCR.
    prob : array-like of float in [0, 1], shape (n,)
        Lesion-level predicted P(pCR).
    method : {"min", "product", "max", "noisy_or"}
        See the module docstring: "min"/"product" estimate P(all lesions
        pCR); "max"/"noisy_or" estimate P(at least one lesion pCR).

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``n_lesions``, ``truth`` (the event's
        indicator: all lesions pCR for "min"/"product", any lesion pCR for
        "max"/"noisy_or"), ``prob``, ``event`` ("all_pcr"/"any_pcr"), sorted
        by ``patient_id``.
    """
    method = check_choice(method, "method", tuple(PATIENT_METHODS))
    ids = as_1d(patient_ids, "patient_ids")
    t = check_binary(truth, "truth")
    p = check_probabilities(prob, "prob")
    check_same_length(patient_ids=ids, truth=t, prob=p)
    if np.any(pd.isna(ids)):
        raise ValueError("`patient_ids` has missing values; every lesion needs a patient.")
    df = pd.DataFrame({"patient_id": ids, "truth": t.astype(int), "prob": p})
    g = df.groupby("patient_id", sort=True)
    event = PATIENT_METHODS[method]
    truth_agg = g["truth"].min() if event == "all_pcr" else g["truth"].max()
    if method == "min":
        prob_agg = g["prob"].min()
    elif method == "max":
        prob_agg = g["prob"].max()
    elif method == "product":
        # Sum of logs avoids underflow for many lesions; log(0) = -inf gives 0.
        with np.errstate(divide="ignore"):
            prob_agg = np.exp(np.log(df["prob"]).groupby(df["patient_id"], sort=True).sum())
    else:  # noisy_or
        with np.errstate(divide="ignore"):
            log_q = np.log1p(-df["prob"]).groupby(df["patient_id"], sort=True).sum()
        prob_agg = -np.expm1(log_q)
    out = pd.DataFrame(
        {
            "patient_id": truth_agg.index.to_numpy(),
            "n_lesions": g.size().to_numpy(),
            "truth": truth_agg.to_numpy().astype(int),
            "prob": prob_agg.to_numpy().astype(float),
            "event": event,
        }
    )
    return out
