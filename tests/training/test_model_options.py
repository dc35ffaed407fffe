"""Every model option, composed with the default data config (registration included), trains one
epoch of one fold on the ``tiny`` synthetic cohort and predicts every lesion of the fold."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from dlm_ml.cli.config import CONF_DIR, config_groups
from dlm_ml.data.covariates import lesion_covariates
from dlm_ml.data.folds import make_folds
from dlm_ml.data.patches import build_patches
from dlm_ml.data.prepare import prepare_cohort
from dlm_ml.data.registration import registration_config_from_cfg
from dlm_ml.training.cross_validation import train_fold
from dlm_ml.training.recorder import PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE, MemoryFoldRun
from tests.model_options import NETWORK_OPTIONS

pytestmark = pytest.mark.slow  # registers a cohort and trains every model option

# every network option (the baselines train through dlm-train in tests/cli/test_baselines.py)
MODELS = NETWORK_OPTIONS
ENCODERS = config_groups("train")["model/encoder"]
#: Options that need covariates get them; one image model is also trained with them (FiLM).
COVARIATE_CASES = {"covariates_only": ["data/covariates=clinical"],
                   "longitudinal_attention": ["data/covariates=clinical", "model.net.covariate_fusion=film"],
                   "longitudinal": ["data/covariates=clinical"]}


def _config(root: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={root}", "data.synthetic.preset=tiny",
                                          "data.n_folds=2", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                                          "data.datamodule.batch_size=8", "data.preprocess_workers=1",
                                          "data.registration.workers=1",
                                          # 8 voxels per edge: the least every network takes, fast on a CPU
                                          "data.patches.patch_size_mm=16", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "run")
    return cfg


def _patches(cfg, cohort):
    """Cut (or read from the cache of an earlier test) the patches ``cfg`` asks for."""
    return build_patches(cohort, hydra.utils.instantiate(cfg.data.patches), cfg.paths.cache_dir,
                         num_workers=1, registration=registration_config_from_cfg(cfg.data))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny cohort as the default data config prepares it (registered once), and its folds."""
    root = tmp_path_factory.mktemp("tiny_models")
    cfg = _config(root, [])
    cohort, _ = prepare_cohort(cfg.data)
    patches = _patches(cfg, cohort)
    assert not patches.present.all(), "the tiny preset misses some ADC maps: the masked path must be exercised"
    return root, cohort, make_folds(patches.lesions, 2, 0)


def _train_one_fold(tiny, overrides: list[str]) -> MemoryFoldRun:
    root, cohort, folds = tiny
    cfg = _config(root, overrides)
    patches = _patches(cfg, cohort)
    covariates = lesion_covariates(cohort, patches.lesions, hydra.utils.instantiate(cfg.data.covariates))
    run = MemoryFoldRun()
    fold_dir = root / "folds" / "_".join(overrides).replace("/", "-").replace("@", "-")
    result = train_fold(cfg, patches, folds, 0, run, fold_dir, covariates)
    test = result.test
    expected = set(folds.patient_id[folds.fold == 0])
    assert set(test.patient_id) == expected and len(test) == (patches.lesions.patient_id.isin(expected)).sum()
    assert np.isfinite(test.prob_pcr).all() and ((test.prob_pcr >= 0) & (test.prob_pcr <= 1)).all()
    assert {PREDICTIONS_FILE, VALIDATION_PREDICTIONS_FILE} <= set(run.tables)
    assert (run.metrics["n_covariate_features"] > 0) == (covariates is not None)
    return run


@pytest.mark.parametrize("model", MODELS)
def test_every_model_option_trains_one_epoch(tiny, model):
    run = _train_one_fold(tiny, [f"model={model}", *COVARIATE_CASES.get(model, [])])
    if model in COVARIATE_CASES:
        assert run.metrics["n_covariate_features"] > 0
    else:
        assert run.metrics["n_covariate_features"] == 0


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_option_trains_one_epoch(tiny, encoder):
    _train_one_fold(tiny, ["model=longitudinal", f"model/encoder@model.net.encoder={encoder}"])


def test_single_timepoint_and_single_modality_variants(tiny):
    _train_one_fold(tiny, ["model=longitudinal", "data.patches.timepoints=[presurgery]"])
    _train_one_fold(tiny, ["model=longitudinal_pool", "data.patches.modalities=[adc]"])


def test_covariates_for_a_network_that_cannot_read_them_are_refused(tiny):
    with pytest.raises(ValueError, match="does not read covariates"):
        _train_one_fold(tiny, ["model=small_cnn", "data/covariates=clinical"])


def test_losses(tiny):
    for loss in ("bce", "focal"):
        run = _train_one_fold(tiny, ["model=longitudinal", f"model.module.loss={loss}"])
        assert run.metrics["pos_weight"] > 0  # recorded whatever the loss; used by weighted_bce only
