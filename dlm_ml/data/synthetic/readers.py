"""Simulated radiologists reading each lesion at presurgery, and the figures that
describe them (PPV of a complete-response call, AUC, Cohen's kappa).

Convention: ``call = 1`` means "read as complete response" (the positive call), so
P(pcr = 1 | call = 1) is the call's positive predictive value (PPV). The literature on
disappearing lesions takes "lesion seen" as the positive finding and quotes the same
quantity, P(pCR | no lesion seen), as the NPV of imaging; its complement is the fraction
of CR calls that still hold viable tumour (DREAM: 37.5 % for CT + MRI).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlm_ml.data.synthetic.config import ReaderConfig


def reader_parameters(cfg: ReaderConfig) -> pd.DataFrame:
    """Each reader's bias (shift of the latent, i.e. own threshold) and noise SD:
    spread evenly, deterministic from the config."""
    k = cfg.n_readers
    spread = np.linspace(-1.0, 1.0, k) if k > 1 else np.zeros(1)
    return pd.DataFrame({
        "reader_id": [f"R{r + 1}" for r in range(k)],
        "bias": np.round(cfg.bias_spread * spread, 4),
        "noise_sd": np.round(cfg.noise * (1 + cfg.noise_spread * spread[::-1]), 4),
    })


def read_lesions(visible: np.ndarray, d1_mm: np.ndarray, adc_change: np.ndarray | None, shared: np.ndarray,
                 reader_eps: np.ndarray, cfg: ReaderConfig) -> tuple[np.ndarray, np.ndarray]:
    """Scores (1..len(cutpoints)+1) and calls, arrays (n_readers, n_lesions).

    The evidence is what the presurgery images show: whether the lesion is seen on
    CT, its size when seen, and a little of its relative ADC change since baseline
    (absent when either ADC map is missing). ``shared`` is case difficulty common to all readers; ``reader_eps``
    each reader's own noise (standard normal, scaled here).
    """
    visible = np.asarray(visible)
    size_term = -cfg.w_size * visible * np.log(np.maximum(d1_mm, 2.0) / 10.0)
    adc_term = 0.0 if adc_change is None else cfg.w_adc * (np.asarray(adc_change) - cfg.adc_change_ref) / 0.1
    evidence = cfg.w_invisible * (1 - visible) + size_term + adc_term + cfg.shared_noise * shared
    params = reader_parameters(cfg)
    z = evidence[None, :] + params["bias"].to_numpy()[:, None] + params["noise_sd"].to_numpy()[:, None] * reader_eps
    scores = 1 + (z[..., None] > np.asarray(cfg.cutpoints)).sum(axis=-1)
    calls = (scores >= cfg.call_min_score).astype(int)
    return scores, calls


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann–Whitney AUC (ties count half); NaN when one class is empty."""
    y = np.asarray(y).astype(bool)
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()  # = scipy.stats.rankdata
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a), np.asarray(b)
    cats = np.union1d(a, b)
    po = np.mean(a == b)
    pe = sum(np.mean(a == c) * np.mean(b == c) for c in cats)
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def reader_summary(outcomes: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """Per reader: CR calls, PPV = P(pCR | CR call), viable fraction among CR calls,
    P(viable | residual call), sensitivity for pCR, AUC of the score."""
    merged = readings.merge(outcomes[["patient_id", "lesion_id", "pcr"]], on=["patient_id", "lesion_id"])
    rows = []
    for rid, g in merged.groupby("reader_id", sort=True):
        cr = g["call"] == 1
        ppv = g.loc[cr, "pcr"].mean() if cr.any() else float("nan")
        rows.append(dict(reader_id=rid, n=len(g), cr_calls=int(cr.sum()), ppv=ppv, viable_among_cr_calls=1 - ppv,
                         viable_among_residual_calls=1 - g.loc[~cr, "pcr"].mean() if (~cr).any() else float("nan"),
                         sensitivity_pcr=g.loc[g["pcr"] == 1, "call"].mean(), auc=auc(g["pcr"], g["score"])))
    return pd.DataFrame(rows)


def pairwise_kappa(readings: pd.DataFrame, column: str = "call") -> pd.DataFrame:
    """Cohen's kappa of every reader pair on ``column`` (calls by default)."""
    wide = readings.pivot_table(index=["patient_id", "lesion_id"], columns="reader_id", values=column)
    ids = list(wide.columns)
    rows = [dict(reader_a=a, reader_b=b, kappa=cohen_kappa(wide[a], wide[b]))
            for i, a in enumerate(ids) for b in ids[i + 1:]]
    return pd.DataFrame(rows, columns=["reader_a", "reader_b", "kappa"])
