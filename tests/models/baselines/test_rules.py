"""Rules as models: the direction is the rule's, never learned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm_ml.models.baselines.rules import RuleModel
from dlm_ml.stats import roc_auc


def test_disappeared_rule_ranks_by_the_indicator(lesion_frame):
    model = RuleModel("disappeared").fit(lesion_frame, lesion_frame.pcr)
    prob = model.predict_proba(lesion_frame)
    assert len(np.unique(prob)) == 2  # a 0/1 score: two probabilities
    assert prob[lesion_frame.disappeared == 1].min() > prob[lesion_frame.disappeared == 0].max()
    assert roc_auc(lesion_frame.pcr.to_numpy(), prob) == pytest.approx(
        roc_auc(lesion_frame.pcr.to_numpy(), lesion_frame.disappeared.to_numpy()))


def test_probabilities_match_the_observed_rates_for_a_binary_rule(lesion_frame):
    prob = RuleModel("disappeared", ridge=0).fit(lesion_frame, lesion_frame.pcr).predict_proba(lesion_frame)
    for value in (0, 1):
        rows = lesion_frame.disappeared == value
        assert prob[rows.to_numpy()][0] == pytest.approx(lesion_frame.pcr[rows].mean(), abs=1e-3)


def test_direction_is_never_reversed():
    frame = pd.DataFrame({"shrinkage": np.linspace(0, 1, 50), "pcr": (np.linspace(0, 1, 50) < 0.5).astype(int)})
    model = RuleModel("shrinkage").fit(frame, frame.pcr)
    assert model.params_["slope"] == 0.0
    assert np.allclose(model.predict_proba(frame), frame.pcr.mean(), atol=1e-3)
    reversed_rule = RuleModel("shrinkage", higher_means_pcr=False).fit(frame, frame.pcr)
    assert roc_auc(frame.pcr.to_numpy(), reversed_rule.predict_proba(frame)) == 1.0


def test_missing_measurement_gets_the_fit_median_and_is_counted(lesion_frame):
    frame = lesion_frame.copy()
    frame.loc[:9, "shrinkage"] = np.nan
    model = RuleModel("shrinkage").fit(frame, frame.pcr)
    assert model.summary()["n_fit_missing"] == 10
    prob = model.predict_proba(frame)
    assert np.isfinite(prob).all()
    assert prob[0] == pytest.approx(model.predict_proba(
        pd.DataFrame({"shrinkage": [model.params_["fill_value"]]}))[0])


def test_unknown_column_named():
    with pytest.raises(ValueError, match="rule reads column 'adc_change'"):
        RuleModel("adc_change").fit(pd.DataFrame({"x": [1.0, 2.0]}), np.array([0, 1]))


def test_perfect_separation_gives_finite_probabilities():
    frame = pd.DataFrame({"disappeared": [1.0] * 10 + [0.0] * 40, "pcr": [1] * 10 + [1] * 8 + [0] * 32})
    prob = RuleModel("disappeared").fit(frame, frame.pcr).predict_proba(frame)
    assert 0.8 < prob[0] < 0.999 and prob[-1] == pytest.approx(8 / 40, abs=0.05)
