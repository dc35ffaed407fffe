"""Nested cross-validation search: no outer test patient ever reaches a candidate's inner
cross-validation, the score is the inner folds' score, the same seed makes the same choices, and
a search space that cannot be searched is refused naming its key."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.data.folds import DEVELOPMENT_ONLY, make_folds
from dlm_ml.stats import roc_auc
from dlm_ml.training import tuning
from dlm_ml.training.recorder import PREDICTIONS_FILE
from tests.models.baselines.conftest import lesion_feature_frame
from tests.training.conftest import N_PATIENTS

#: A rule model whose column is searched: a one-feature fit, so the fold loops run in milliseconds.
RULE_SEARCH = ["model=rule_shrinkage", "search=custom", "+model.estimator.ridge=1.0",
               "search.space={model.estimator.column: {type: categorical, choices: "
               "[shrinkage, cea_presurgery, baseline_ct_roi__noise0]}, "
               "model.estimator.ridge: {type: float, low: 0.1, high: 10.0, log: true}}"]


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="tune", overrides=["seed=3", "search.n_trials=3", "search.inner_folds=2",
                                                      *overrides])


def _tabular(n_patients=30):
    features = lesion_feature_frame(n_patients=n_patients, seed=2)
    return tuning.TuningData(features[["patient_id", "lesion_id", "pcr"]], features)


def _search(cfg, data, folds, out_dir, recorder=None):
    return tuning.nested_cross_validate(cfg, data, folds, tuning.search_space(cfg.search.space, cfg),
                                        tuning.SearchSettings.from_config(cfg.search),
                                        recorder or tuning.MemoryTuningRecorder(), out_dir)


def _with_development_only(folds: pd.DataFrame) -> pd.DataFrame:
    """Fold 2 becomes development-only: those patients train every outer fold and are never tested."""
    return folds.assign(fold=folds.fold.where(folds.fold != 2, DEVELOPMENT_ONLY))


@pytest.mark.parametrize("design", ["kfold", "with_development_only"])
def test_outer_test_patients_never_reach_a_candidate(monkeypatch, tmp_path, design):
    """Every inner cross-validation (one per trial) sees exactly the outer fold's training
    patients, and its inner folds are made of them alone."""
    seen = []
    original = tuning.cross_validate_tabular

    def recording(cfg, lesions, features, folds, recorder, out_dir):
        seen.append((set(lesions.patient_id), set(folds.patient_id)))
        return original(cfg, lesions, features, folds, recorder, out_dir)

    monkeypatch.setattr(tuning, "cross_validate_tabular", recording)
    data = _tabular()
    folds = make_folds(data.lesions, 3, 5)
    folds = _with_development_only(folds) if design == "with_development_only" else folds
    nested = _search(_cfg(*RULE_SEARCH), data, folds, tmp_path)
    outer = sorted(f for f in folds.fold.unique() if f >= 0)
    assert len(seen) == 3 * len(outer)  # n_trials inner cross-validations per outer fold
    everyone = set(folds.patient_id)
    for k, fold in enumerate(outer):
        tested = set(folds.patient_id[folds.fold == fold])
        for patients, inner_fold_patients in seen[3 * k:3 * (k + 1)]:
            assert not patients & tested, f"outer fold {fold}: test patients {sorted(patients & tested)[:5]} tuned on"
            assert patients == inner_fold_patients == everyone - tested
    # the outer predictions: every tested lesion once, from its own fold's refit
    predictions = nested.result.predictions
    tested_lesions = data.lesions[data.lesions.patient_id.isin(folds.patient_id[folds.fold >= 0])]
    assert len(predictions) == len(tested_lesions)
    assert [c.fold for c in nested.choices] == outer


def test_the_chosen_score_is_the_inner_cross_validation_of_the_training_patients(tmp_path):
    """Recomputed independently: the best trial's score is the mean inner-fold AUC of its
    setting on inner folds of the outer training patients, and the best of every trial."""
    cfg = _cfg(*RULE_SEARCH)
    data = _tabular()
    folds = make_folds(data.lesions, 3, 5)
    recorder = tuning.MemoryTuningRecorder()
    nested = _search(cfg, data, folds, tmp_path, recorder)
    dims = tuning.search_space(cfg.search.space, cfg)
    for choice in nested.choices:
        tested = folds.patient_id[folds.fold == choice.fold]
        training = data.subset(np.flatnonzero(~data.lesions.patient_id.isin(tested)))
        inner_folds = make_folds(training.lesions, 2, 3 + choice.fold)  # search.seed (= seed) + outer fold
        again = training.cross_validate(tuning.candidate_config(cfg, choice.params, dims), inner_folds,
                                        tmp_path / "again" / str(choice.fold))
        per_fold = [f.test for f in again.folds]
        expected = np.mean([roc_auc(t.pcr.to_numpy(), t.prob_pcr.to_numpy()) for t in per_fold])
        assert choice.inner_score == pytest.approx(expected, abs=1e-12)
        assert choice.inner_score == choice.trials.inner_score.max() and len(choice.trials) == 3
        run = recorder.runs[choice.fold]
        assert run.params == {k: str(v) for k, v in choice.params.items()}
        assert run.trial_scores == dict(zip(choice.trials.trial, choice.trials.inner_score))
        pd.testing.assert_frame_equal(run.tables[tuning.TRIALS_FILE], choice.trials)
        assert set(run.tables[PREDICTIONS_FILE].patient_id) == set(folds.patient_id[folds.fold == choice.fold])


def test_same_seed_same_choices_and_predictions_in_memory_or_sqlite(tmp_path):
    data = _tabular()
    folds = make_folds(data.lesions, 3, 5)
    a = _search(_cfg(*RULE_SEARCH), data, folds, tmp_path / "a")
    b = _search(_cfg(*RULE_SEARCH, "search.storage=sqlite"), data, folds, tmp_path / "b")
    assert (tmp_path / "b" / "optuna.db").is_file()
    pd.testing.assert_frame_equal(a.chosen_table(), b.chosen_table())
    pd.testing.assert_frame_equal(a.result.predictions, b.result.predictions)
    columns = ["fold", "trial", "model.estimator.column", "model.estimator.ridge", "inner_score"]
    pd.testing.assert_frame_equal(a.trials_table()[columns], b.trials_table()[columns])
    c = _search(_cfg(*RULE_SEARCH, "seed=4"), data, folds, tmp_path / "c")
    assert not a.trials_table()["model.estimator.ridge"].equals(c.trials_table()["model.estimator.ridge"])


def test_a_grid_model_trains_the_chosen_point(tmp_path):
    """``as_list``: clinical_logistic's C grid becomes the one chosen point, and the outer
    fold's refit uses it (its model summary)."""
    cfg = _cfg("model=clinical_logistic", "search=clinical_logistic", "search.n_trials=2",
               "model.estimator.inner_folds=2")
    data = _tabular(n_patients=24)
    folds = make_folds(data.lesions, 2, 5)
    nested = _search(cfg, data, folds, tmp_path)
    for choice in nested.choices:
        summary = json.loads((tmp_path / f"fold_{choice.fold}" / "model_summary.json").read_text())
        assert summary["best_params"]["logistic__C"] == pytest.approx(choice.params["model.estimator.c_grid"])
    assert not (tmp_path / "tuning" / "fold_0" / "trial_0").exists()  # trial folders removed unless kept


def test_candidate_config_sets_keys_and_leaves_the_run_config_alone():
    cfg = _cfg("model=small_cnn", "search=network")
    dims = tuning.search_space(cfg.search.space, cfg)
    candidate = tuning.candidate_config(cfg, {"model.optimizer.lr": 0.005, "model.optimizer.weight_decay": 1e-5,
                                              "model.net.dropout": 0.4}, dims)
    assert (candidate.model.optimizer.lr, candidate.model.net.dropout) == (0.005, 0.4)
    assert (cfg.model.optimizer.lr, cfg.model.net.dropout) == (0.001, 0.2)
    grid = _cfg("model=clinical_logistic", "search=clinical_logistic")
    chosen = tuning.candidate_config(grid, {"model.estimator.c_grid": 0.3},
                                     tuning.search_space(grid.search.space, grid))
    assert list(chosen.model.estimator.c_grid) == [0.3]
    # interpolations over a searched key follow it (the scheduler's horizon is the epoch count)
    epochs = tuning.Dimension("trainer.max_epochs", "int", 1, 50)
    assert tuning.candidate_config(cfg, {"trainer.max_epochs": 7}, [epochs]).model.scheduler.T_max == 7


@pytest.mark.parametrize(("space", "named"), [
    ({"model.optimizer.lrr": {"type": "float", "low": 0.1, "high": 1.0}}, "model.optimizer.lrr is not a key"),
    ({"data.patches.spacing_mm": {"type": "float", "low": 1.0, "high": 2.0}}, "only keys under"),
    ({"seed": {"type": "int", "low": 1, "high": 5}}, "search.space.seed"),
    ({"model.optimizer.lr": {"type": "loguniform", "low": 0.1, "high": 1.0}}, "type must be one of"),
    ({"model.optimizer.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "low > 0"),
    ({"model.optimizer.lr": {"type": "float", "low": 1.0, "high": 0.1}}, "low < high"),
    ({"model.net.dropout": {"type": "categorical", "choices": [[0.1], [0.2]]}}, "needs choices"),
    ({"model.net.dropout": {"type": "float", "low": 0.1, "high": 0.2, "lo": 1}}, "unknown setting"),
    ({}, "search.space is empty"),
])
def test_a_space_that_cannot_be_searched_is_refused_naming_the_key(space, named):
    cfg = _cfg("model=small_cnn")
    with pytest.raises(tuning.SearchConfigError, match=named) as refused:
        tuning.search_space(OmegaConf.create(space), cfg)
    for key in space:
        assert f"search.space.{key}" in str(refused.value)


def test_a_network_is_tuned_on_the_training_patients_only(patches, monkeypatch, tmp_path):
    """The network path: patches (and covariates) cut to the outer training patients for the
    inner folds; the refit predicts the test fold only."""
    seen = []
    original = tuning.cross_validate

    def recording(cfg, patch_set, folds, recorder, out_dir, covariates=None):
        assert len(patch_set.image) == len(patch_set.present) == len(patch_set.lesions)
        seen.append(set(patch_set.lesions.patient_id))
        return original(cfg, patch_set, folds, recorder, out_dir, covariates)

    monkeypatch.setattr(tuning, "cross_validate", recording)
    patients = sorted(set(patches.lesions.patient_id))
    folds = pd.DataFrame({"patient_id": patients, "fold": [0] * 3 + [DEVELOPMENT_ONLY] * (N_PATIENTS - 3)})
    cfg = _cfg("model=small_cnn", "search=custom", "search.n_trials=1", "trainer=cpu", "trainer.max_epochs=1",
               "data.patches.patch_size_mm=16", "data.patches.spacing_mm=2", "data.datamodule.batch_size=8",
               "search.space={model.optimizer.lr: {type: float, low: 0.0001, high: 0.01, log: true}}")
    nested = _search(cfg, tuning.TuningData(patches.lesions, patches=patches), folds, tmp_path)
    assert seen == [set(patients[3:])]
    assert set(nested.result.predictions.patient_id) == set(patients[:3])
    assert 1e-4 <= nested.choices[0].params["model.optimizer.lr"] <= 1e-2
