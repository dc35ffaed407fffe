"""Post-hoc calibration maps: fitted values, monotonicity, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_ml.models.calibration import MIN_ISOTONIC_LESIONS, PostHocCalibration
from dlm_ml.stats import roc_auc


def _overconfident(n=400, seed=0):
    """True P(pCR) = sigmoid(z); the model reports sigmoid(3 z): too confident by T = 3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    return 1 / (1 + np.exp(-3 * z)), y


def test_temperature_recovers_the_overconfidence():
    prob, y = _overconfident(4000)
    fitted = PostHocCalibration("temperature").fit(prob, y)
    assert fitted.params["temperature"] == pytest.approx(3.0, rel=0.1)


def test_platt_recovers_slope_and_offset():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, 5000)
    y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(int)
    fitted = PostHocCalibration("platt").fit(1 / (1 + np.exp(-z)), y)
    assert fitted.params["slope"] == pytest.approx(0.5, abs=0.08)
    assert fitted.params["intercept"] == pytest.approx(-1.0, abs=0.12)


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_parametric_maps_keep_the_ranking(method):
    prob, y = _overconfident(300, seed=3)
    fitted = PostHocCalibration(method).fit(prob, y)
    other, _ = _overconfident(200, seed=4)
    calibrated = fitted.apply(other)
    assert np.all(np.diff(calibrated[np.argsort(other, kind="stable")]) >= 0)
    y_other = (np.random.default_rng(5).uniform(size=200) < other).astype(int)
    assert roc_auc(y_other, calibrated) == pytest.approx(roc_auc(y_other, other))


def test_platt_slope_stays_positive_when_validation_shows_the_reverse():
    prob = np.linspace(0.05, 0.95, 100)
    y = (prob < 0.5).astype(int)  # perfectly reversed
    fitted = PostHocCalibration("platt").fit(prob, y)
    assert fitted.params["slope"] > 0
    assert np.all(np.diff(fitted.apply(prob)) > 0)


def test_calibration_lowers_the_log_loss_of_held_out_lesions():
    prob, y = _overconfident(2000, seed=6)
    test_prob, test_y = _overconfident(2000, seed=7)

    def log_loss(p, t):
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))

    for method in ("temperature", "platt"):
        fitted = PostHocCalibration(method).fit(prob, y)
        assert log_loss(fitted.apply(test_prob), test_y) < log_loss(test_prob, test_y) - 0.05


def test_isotonic_refused_below_the_minimum_with_the_reason():
    prob, y = _overconfident(MIN_ISOTONIC_LESIONS - 1)
    with pytest.raises(ValueError, match=r"isotonic calibration is refused with 999 validation lesions \(fold 2"):
        PostHocCalibration("isotonic").fit(prob, y, where="fold 2 validation lesions")
    fitted = PostHocCalibration("isotonic").fit(*_overconfident(MIN_ISOTONIC_LESIONS))
    out = fitted.apply(np.array([0.0, 0.5, 1.0]))
    assert np.all((out >= 0) & (out <= 1)) and np.all(np.diff(out) >= 0)


def test_one_class_and_unknown_method_refused():
    with pytest.raises(ValueError, match="both classes"):
        PostHocCalibration("platt").fit(np.array([0.2, 0.4]), np.array([1, 1]))
    with pytest.raises(ValueError, match="calibration.method must be one of"):
        PostHocCalibration("beta")


def test_none_is_the_identity():
    prob = np.array([0.1, 0.7])
    assert np.array_equal(PostHocCalibration("none").fit(prob, np.array([0, 1])).apply(prob), prob)
