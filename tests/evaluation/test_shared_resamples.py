"""One evaluation draws its patient resamples once; every bootstrapped quantity reuses them."""

from __future__ import annotations

import json

import pytest

from dlm_ml import stats
from dlm_ml.evaluation.sections import compute_sections
from dlm_ml.stats import _cluster_bootstrap
from dlm_ml.utils.jsonable import to_jsonable
from tests.evaluation.helpers import counts_for, make_tables, settings


@pytest.fixture(scope="module")
def tables():
    pred, readings, thresholds = make_tables(n_patients=30, seed=11)
    # one reader reads only some lesions: its quantities take a subset of the shared resamples
    readings = readings[~((readings.reader_id == "R3") & (readings.lesion_id == "L1"))]
    return pred, readings, thresholds


def test_the_patient_resamples_are_drawn_once_per_evaluation(tables, monkeypatch):
    pred, readings, thresholds = tables
    draws = []
    original = _cluster_bootstrap._draw_cluster_counts

    def counted(rng, n_clusters, n_boot):
        draws.append((n_clusters, n_boot))
        return original(rng, n_clusters, n_boot)

    monkeypatch.setattr(_cluster_bootstrap, "_draw_cluster_counts", counted)
    sections = compute_sections(pred, readings, thresholds, counts_for(pred, readings), settings(n_boot=120, seed=5))
    assert sections["discrimination"][0]["bootstrap"]["available"]
    assert draws == [(pred.patient_id.nunique(), 120)]


def test_same_seed_same_numbers_and_the_full_cohort_interval_is_the_seeds(tables):
    pred, readings, thresholds = tables
    run = settings(n_boot=150, seed=5)
    one = to_jsonable(compute_sections(pred, readings, thresholds, counts_for(pred, readings), run))
    two = to_jsonable(compute_sections(pred, readings, thresholds, counts_for(pred, readings), run))
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    alone = stats.cluster_bootstrap_auc(pred.pcr, pred.prob_pcr, pred.patient_id, n_boot=150, seed=5)
    model = one["discrimination"][0]["bootstrap"]
    assert (model["ci_low"], model["ci_high"]) == (alone.ci_low, alone.ci_high)
