"""Decision-curve analysis (Vickers & Elkin 2006), dcurves conventions.

At threshold probability ``pt`` a subject is *positive* (receives the
intervention) when its predicted risk is ``>= pt``, and

    net benefit = TP/n − FP/n · pt / (1 − pt)

(``pt / (1 − pt)`` is the exchange rate: the harm of one unnecessary
intervention in units of one beneficial intervention). "Treat all" calls
everyone positive; "treat none" has net benefit 0.

Framing in dlm_ml
-----------------
The functions are generic: ``truth`` marks the event that makes the
intervention worthwhile and ``prob`` is the predicted probability of that
event. The model predicts P(pCR). Two framings are possible:

* *Leave the lesion in place* when P(pCR) ≥ pt: ``truth = pcr``,
  ``prob = prob_pcr``; "treat all" = "leave all", "treat none" = "resect all".
  A clinician deciding whether to LEAVE a lesion uses P(pCR) this way, with
  ``pt`` the P(pCR) needed to accept leaving it.
* *Resect* when the risk of viable tumour ≥ pt: ``truth = 1 − pcr``,
  ``prob = 1 − prob_pcr``; "treat all" = "resect all", "treat none" =
  "leave all".

Pass ``treat_all_label`` / ``treat_none_label`` to name the reference
strategies accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._validation import as_1d, check_binary, check_probabilities, check_same_length, check_scores

__all__ = ["net_benefit", "decision_curve"]


def _thresholds(thresholds) -> np.ndarray:
    th = check_scores(np.atleast_1d(np.asarray(thresholds, dtype=float)), "thresholds")
    bad = (th < 0) | (th >= 1)
    if bad.any():
        raise ValueError(
            f"`thresholds` must lie in [0, 1) (net benefit divides by 1 − pt); got "
            f"{th[bad][:3].tolist()}."
        )
    return th


def _is_call(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _positives(pred: np.ndarray, th: np.ndarray) -> np.ndarray:
    """(n_thresholds, n) boolean matrix of positive subjects.

    A 0/1 vector is a fixed binary call (positive iff 1, at every threshold);
    otherwise a subject is positive when ``pred >= threshold``.
    """
    if _is_call(pred):
        return np.broadcast_to(pred == 1, (th.size, pred.size))
    return pred[None, :] >= th[:, None]


def _counts(truth: np.ndarray, positive: np.ndarray):
    tp = (positive & truth[None, :]).sum(axis=1)
    fp = (positive & ~truth[None, :]).sum(axis=1)
    return tp, fp


def _nb(tp, fp, n, th):
    return tp / n - fp / n * th / (1.0 - th)


def net_benefit(truth, prob_or_call, thresholds) -> np.ndarray:
    """Net benefit of a prediction at each threshold probability.

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
        1 = the event for which intervening is worthwhile.
    prob_or_call : array-like, shape (n,)
        Predicted probability of the event in [0, 1]; positive when
        ``prob >= threshold``. A vector holding only 0 and 1 is treated as a
        fixed binary call (positive iff 1, whatever the threshold).
    thresholds : float or array-like in [0, 1)

    Returns
    -------
    ndarray, shape (n_thresholds,)
        ``TP/n − FP/n · pt/(1 − pt)``.
    """
    t = check_binary(truth, "truth").astype(bool)
    p = check_probabilities(prob_or_call, "prob_or_call")
    check_same_length(truth=t, prob_or_call=p)
    th = _thresholds(thresholds)
    tp, fp = _counts(t, _positives(p, th))
    return _nb(tp, fp, t.size, th)


def decision_curve(
    truth,
    predictions: Mapping[str, object],
    thresholds,
    *,
    treat_all_label: str = "treat_all",
    treat_none_label: str = "treat_none",
) -> pd.DataFrame:
    """Decision curves of several strategies plus "treat all" and "treat none".

    Parameters
    ----------
    truth : array-like of 0/1, shape (n,)
    predictions : mapping name -> array-like, shape (n,)
        Probabilities of the event, or 0/1 calls (e.g. a reader's calls).
    thresholds : array-like in [0, 1)
        E.g. ``np.arange(0.01, 1.0, 0.01)``.
    treat_all_label, treat_none_label : str
        Strategy names of the reference curves (e.g. "leave all" /
        "resect all"; see the module docstring for the framing).

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per (strategy, threshold) with columns ``strategy``,
        ``threshold``, ``net_benefit``, ``tp``, ``fp``, ``n`` and
        ``net_interventions_avoided`` = ``(NB − NB_treat_all) · (1 − pt)/pt``
        per subject (dcurves' definition before its per-100 scaling; NaN at
        pt = 0). Strategies appear in the order treat all, treat none, then
        ``predictions``.
    """
    t = check_binary(truth, "truth").astype(bool)
    th = _thresholds(thresholds)
    if not isinstance(predictions, Mapping) or not predictions:
        raise ValueError("`predictions` must be a non-empty mapping {name: probabilities or calls}.")
    reserved = {treat_all_label, treat_none_label}
    if len(reserved) != 2:
        raise ValueError("`treat_all_label` and `treat_none_label` must differ.")
    n = t.size
    strategies: dict[str, np.ndarray] = {
        treat_all_label: np.ones((th.size, n), dtype=bool),
        treat_none_label: np.zeros((th.size, n), dtype=bool),
    }
    for name, pred in predictions.items():
        if name in reserved:
            raise ValueError(f"Prediction name {name!r} clashes with a reference strategy label.")
        p = check_probabilities(as_1d(pred, f"predictions[{name!r}]"), f"predictions[{name!r}]")
        check_same_length(truth=t, **{f"predictions[{name!r}]": p})
        strategies[str(name)] = _positives(p, th)
    tp_all, fp_all = _counts(t, strategies[treat_all_label])
    nb_all = _nb(tp_all, fp_all, n, th)
    frames = []
    with np.errstate(divide="ignore", invalid="ignore"):
        odds_inv = np.where(th > 0, (1.0 - th) / np.where(th > 0, th, 1.0), np.nan)
    for name, pos in strategies.items():
        tp, fp = _counts(t, pos)
        nb = _nb(tp, fp, n, th)
        frames.append(
            pd.DataFrame(
                {
                    "strategy": name,
                    "threshold": th,
                    "net_benefit": nb,
                    "tp": tp.astype(int),
                    "fp": fp.astype(int),
                    "n": n,
                    "net_interventions_avoided": (nb - nb_all) * odds_inv,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
