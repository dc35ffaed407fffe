"""Tests of the voxel renderer's building blocks (dlm_ml.data.synthetic.anatomy): the image noise,
the partial-volume edge and the reuse of the liver's signed distance for the vessels. What the
written images hold (intensities, noise SD, masks) is tested on whole cohorts in test_synthetic.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from dlm_ml.data.synthetic import anatomy, make_config
from dlm_ml.data.synthetic.tables import simulate_cohort


def test_image_noise_is_standard_normal_seeded_and_shaped():
    shape = (7, 41, 53)  # not a multiple of the four draws per 64-bit word
    a = anatomy.image_noise(np.random.default_rng(5), shape)
    assert a.shape == shape and a.dtype == np.float32
    assert np.array_equal(a, anatomy.image_noise(np.random.default_rng(5), shape))
    assert not np.array_equal(a, anatomy.image_noise(np.random.default_rng(6), shape))
    x = np.concatenate([a.ravel(), anatomy.image_noise(np.random.default_rng(7), (400_000,))])
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert stats.kstest(x, "norm").pvalue > 0.001
    # the tails are there, to the table's last level (±4.3 SD)
    assert np.mean(np.abs(x) > 3) == pytest.approx(2 * stats.norm.sf(3), rel=0.15)
    assert np.abs(x).max() <= anatomy._NORMAL_QUANTILES.max()
    # consecutive draws of one stream are independent
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.01


def test_image_noise_levels_are_transformed_quantiles():
    levels = np.abs(anatomy._NORMAL_QUANTILES) * np.float32(12.0)
    plain = anatomy.image_noise(np.random.default_rng(3), (5, 6, 7))
    scaled = anatomy.image_noise(np.random.default_rng(3), (5, 6, 7), levels)
    np.testing.assert_array_equal(scaled, np.abs(plain) * np.float32(12.0))


def test_normal_quantiles_have_unit_variance_and_zero_mean():
    q = anatomy._NORMAL_QUANTILES.astype(float)
    assert q.size == 1 << 16 and np.all(np.diff(q) > 0)
    assert q.mean() == pytest.approx(0, abs=1e-9) and np.mean(q ** 2) == pytest.approx(1, abs=1e-6)


def test_membership_is_the_logistic_of_the_signed_distance():
    width = 1.7
    sd = np.linspace(-60, 60, 100_001, dtype=np.float32)
    m = anatomy._membership(sd, width)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, expit(-sd.astype(float) / width), rtol=0, atol=3e-7)
    assert np.all(anatomy._membership(np.zeros(3, np.float32), width) == 0.5)
    assert np.all(m[sd < -1e-3] > 0.5) and np.all(m[sd > 1e-3] < 0.5)
    far = np.abs(sd) > anatomy._SATURATION_WIDTHS * width
    np.testing.assert_allclose(m[far], (sd[far] < 0).astype(np.float32), rtol=0, atol=1e-10)


def test_vessels_drawn_with_the_liver_distance_reused_equal_those_computed_afresh(monkeypatch):
    """The vessels reuse the liver's signed distance of their slab where their box lies inside
    the liver's: the rendered images and masks must be bit-identical to computing it afresh."""
    sim = simulate_cohort(make_config("tiny", n_patients=2))
    seeds = [spec.render_seed.spawn(len(spec.images)) for spec in sim.specs]
    reused = []

    def counting_within(region, box):
        out = within(region, box)
        reused.append(out is not None)
        return out

    def render_all():
        return [anatomy.render(spec.anatomy, spec.tissues[(im.timepoint, im.modality)],
                               spec.lesion_draws[(im.timepoint, im.modality)], im.grid, im.pose, spec.edge_mm,
                               np.random.default_rng(ss), with_masks=True)
                for spec, streams in zip(sim.specs, seeds) for im, ss in zip(spec.images, streams)]

    within = anatomy._within
    monkeypatch.setattr(anatomy, "_within", counting_within)
    fast = render_all()
    assert any(reused)  # the reuse path was taken
    monkeypatch.setattr(anatomy, "_within", lambda region, box: None)
    fresh = render_all()
    for a, b in zip(fast, fresh):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_within_refuses_a_box_reaching_outside_the_region():
    outer = (slice(2, 6), slice(10, 20), slice(0, 8))
    arr = np.arange(4 * 10 * 8, dtype=np.float32).reshape(4, 10, 8)
    inner = (slice(3, 5), slice(12, 15), slice(1, 8))
    np.testing.assert_array_equal(anatomy._within((outer, arr), inner), arr[1:3, 2:5, 1:8])
    assert anatomy._within((outer, arr), (slice(1, 5), slice(12, 15), slice(1, 8))) is None
    assert anatomy._within((outer, arr), (slice(3, 5), slice(12, 21), slice(1, 8))) is None
    assert anatomy._within(None, inner) is None
    # an array broadcast along an axis (not filling the box) is not reused
    assert anatomy._within((outer, arr[:, :1]), inner) is None
