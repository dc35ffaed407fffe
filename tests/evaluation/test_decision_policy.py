"""The clinical policy "disappeared => leave" in the decision curve: its net benefit from its TP/FP
counts, and why it is not drawn when the presurgery measurement is missing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dlm_ml.data.cohort.schema import DIAMETER_PRESURGERY
from dlm_ml.evaluation.evaluate import evaluate
from dlm_ml.evaluation.sections.common import DISAPPEARED_LEAVE
from dlm_ml.evaluation.sections.probabilities import decision
from tests.evaluation.helpers import make_tables, settings

THRESHOLDS = (0.2, 0.5, 0.75)


def _small():
    """Six lesions of three patients: three disappeared (two of them pCR), three still seen."""
    return pd.DataFrame({"patient_id": ["P1", "P1", "P2", "P2", "P3", "P3"], "lesion_id": ["L1", "L2"] * 3,
                         "fold": 0, "prob_pcr": [0.9, 0.6, 0.7, 0.2, 0.4, 0.1], "pcr": [1, 1, 0, 0, 1, 0],
                         DIAMETER_PRESURGERY: [0.0, 0.0, 0.0, 5.0, 3.0, 8.0]})


def test_policy_net_benefit_equals_hand_computation():
    pred = _small()
    section = decision(pred, pred.iloc[0:0], [], None, settings(decision_thresholds=THRESHOLDS))
    policy = section["policy"]
    assert policy["available"] and policy["n_disappeared"] == 3 and policy["n_lesions"] == 6
    # left in place: the 3 disappeared lesions; TP = 2 (pCR), FP = 1 (viable), n = 6
    hand = [2 / 6 - 1 / 6 * pt / (1 - pt) for pt in THRESHOLDS]
    assert policy["net_benefit"].net_benefit.to_numpy() == pytest.approx(hand, abs=1e-12)
    assert list(policy["net_benefit"].tp) == [2] * 3 and list(policy["net_benefit"].fp) == [1] * 3
    curve = section["curve"]
    assert curve[curve.strategy == DISAPPEARED_LEAVE].net_benefit.to_numpy() == pytest.approx(hand, abs=1e-12)
    assert section["strategy_groups"][DISAPPEARED_LEAVE] == (DISAPPEARED_LEAVE, "policy")


def _cohort(pred, readings, diameters=None):
    lesions = pred[["patient_id", "lesion_id"]]
    if diameters is not None:
        lesions = lesions.assign(**{DIAMETER_PRESURGERY: diameters})
    return SimpleNamespace(lesions=lesions, outcomes=pred[["patient_id", "lesion_id", "pcr"]], readings=readings)


def _report(tmp_path, diameters):
    pred, readings, thresholds = make_tables(n_patients=15, readers=("R1", "R2"))
    ev = evaluate(pred, _cohort(pred, readings, diameters(pred) if diameters else None), thresholds, tmp_path,
                  settings=settings(n_boot=20), header={})
    return pred, json.loads((tmp_path / "report.json").read_text())["decision_curve"], \
        (tmp_path / "report.md").read_text(), ev


def test_policy_drawn_through_evaluate_when_every_lesion_has_it(tmp_path):
    pred, section, md, _ = _report(tmp_path, lambda p: np.where(np.arange(len(p)) % 3 == 0, 0.0, 6.0))
    assert section["policy"]["available"]
    assert DISAPPEARED_LEAVE in {row["strategy"] for row in section["curve"]}
    assert f"NB {DISAPPEARED_LEAVE}" in md and "is the clinical default policy" in md


def test_policy_absent_with_the_number_missing(tmp_path):
    def one_missing(p):
        d = np.where(np.arange(len(p)) % 3 == 0, 0.0, 6.0)
        d[[1, 4]] = np.nan
        return d

    pred, section, md, _ = _report(tmp_path, one_missing)
    policy = section["policy"]
    assert not policy["available"] and policy["n_lesions_missing"] == 2
    assert f"2 of {len(pred)} evaluated lesions have no {DIAMETER_PRESURGERY}" in policy["reason"]
    assert DISAPPEARED_LEAVE not in {row["strategy"] for row in section["curve"]}
    assert f"The clinical policy '{DISAPPEARED_LEAVE}' is not drawn: 2 of {len(pred)}" in md


def test_policy_absent_when_the_cohort_lacks_the_column(tmp_path):
    _, section, md, _ = _report(tmp_path / "none", None)
    assert not section["policy"]["available"]
    assert f"the cohort records no {DIAMETER_PRESURGERY}" in section["policy"]["reason"]
    assert "is not drawn: the cohort records no" in md
