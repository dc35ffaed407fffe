"""A fold ensemble written from each fold's saved network, encoder and calibration, read back and
averaged: the same probabilities as the fold models it was made of, nothing pickled."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from dlm_ml.data.covariates import CovariateConfig, CovariateEncoder
from dlm_ml.models.build import build_network
from dlm_ml.models.calibration import FittedCalibration
from dlm_ml.models.ensemble import ENSEMBLE_FILE, FoldEnsemble, save_fold_predictor, write_fold_ensemble
from tests.models.test_build_network import model_config

CHANNELS = ["baseline_ct", "baseline_adc", "presurgery_ct", "presurgery_adc"]
COVARIATES = CovariateConfig(numeric=("age", "cea"), log_numeric=("cea",), categorical=("sex",))


def _covariates(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"age": rng.normal(60, 10, n), "cea": rng.lognormal(1, 1, n),
                          "sex": rng.choice(["F", "M"], n).astype(object)})
    table.loc[0, "age"] = np.nan
    table.loc[1, "sex"] = np.nan
    return table


def _fold_parts(tmp_path, n_folds: int = 3, covariates: bool = True):
    """Per fold: a randomly initialised network of the longitudinal config, its encoder, its calibration."""
    net_cfg = model_config("longitudinal")
    parts = {}
    for fold in range(n_folds):
        torch.manual_seed(fold)
        encoder = CovariateEncoder(COVARIATES).fit(_covariates(30, fold)) if covariates else None
        net = build_network(net_cfg, encoder.n_features if encoder else 0).eval()
        calibration = FittedCalibration("platt", {"slope": 0.5 + fold, "intercept": -0.2 * fold}, 20, 7)
        fold_dir = save_fold_predictor(tmp_path / f"fold_{fold}" / "predictor", net, encoder)
        parts[fold] = (fold_dir, net, encoder, calibration)
    return net_cfg, parts


def _ensemble(tmp_path, **kwargs):
    net_cfg, parts = _fold_parts(tmp_path, **kwargs)
    folder = write_fold_ensemble(
        tmp_path / "fold_ensemble", {k: p[0] for k, p in parts.items()},
        net_cfg=OmegaConf.to_container(net_cfg, resolve=True), channel_names=CHANNELS, patch_voxels=8, spacing_mm=2.0,
        covariates=COVARIATES if kwargs.get("covariates", True) else None,
        calibrations={k: p[3] for k, p in parts.items()}, model_name="longitudinal")
    return folder, parts


def _inputs(n: int = 6, seed: int = 9):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, 4, 8, 8, 8)).astype(np.float32)
    present = np.ones((n, 4), bool)
    present[2, 3] = False
    image[2, 3] = 0
    return image, present, _covariates(n, 100 + seed)


def _direct(net, encoder, calibration, image, present, covariates, flips=((),)):
    """What the fold's own network gives, computed here without the ensemble code."""
    x, p = torch.from_numpy(image), torch.from_numpy(present)
    k = torch.from_numpy(encoder.transform(covariates)) if encoder else torch.zeros(len(image), 0)
    with torch.no_grad():
        probs = [torch.sigmoid(net(torch.flip(x, d) if d else x, p, k)).numpy().astype(float) for d in flips]
    return calibration.apply(np.mean(probs, axis=0))


def test_the_ensemble_reproduces_each_fold_model_and_averages_them(tmp_path):
    folder, parts = _ensemble(tmp_path)
    ensemble = FoldEnsemble.load(folder)
    image, present, covariates = _inputs()
    prediction = ensemble.predict(image, present, covariates, batch_size=4)
    assert prediction.folds == [0, 1, 2]
    for j, (net, encoder, calibration) in enumerate(p[1:] for p in parts.values()):
        np.testing.assert_allclose(prediction.calibrated[:, j], _direct(net, encoder, calibration, image, present,
                                                                         covariates), rtol=0, atol=1e-6)
    np.testing.assert_allclose(prediction.prob_pcr, prediction.calibrated.mean(axis=1))
    assert np.all(prediction.spread > 0)
    # one fold alone
    only = ensemble.predict(image, present, covariates, folds=[1])
    assert only.folds == [1]
    np.testing.assert_array_equal(only.calibrated[:, 0], prediction.calibrated[:, 1])


def test_flip_tta_averages_the_flipped_patches_before_calibration(tmp_path):
    folder, parts = _ensemble(tmp_path, n_folds=1)
    ensemble = FoldEnsemble.load(folder)
    image, present, covariates = _inputs()
    tta = ensemble.predict(image, present, covariates, flip_tta=True)
    plain = ensemble.predict(image, present, covariates)
    net, encoder, calibration = parts[0][1:]
    expected = _direct(net, encoder, calibration, image, present, covariates, flips=((), (2,), (3,), (4,)))
    np.testing.assert_allclose(tta.calibrated[:, 0], expected, rtol=0, atol=1e-6)
    assert not np.allclose(tta.prob_pcr, plain.prob_pcr)


def test_the_folder_is_plain_json_and_tensors(tmp_path):
    folder, _ = _ensemble(tmp_path)
    meta = json.loads((folder / ENSEMBLE_FILE).read_text())
    assert meta["handles_missing_images"] is True and meta["channel_names"] == CHANNELS
    assert [f["fold"] for f in meta["folds"]] == [0, 1, 2]
    state = torch.load(folder / meta["folds"][0]["weights"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_refusals(tmp_path):
    folder, _ = _ensemble(tmp_path)
    ensemble = FoldEnsemble.load(folder)
    image, present, covariates = _inputs()
    with pytest.raises(ValueError, match=r"patches \[N, 4, 8, 8, 8\]"):
        ensemble.predict(image[:, :, :4], present, covariates)
    with pytest.raises(ValueError, match="not among the ensemble's folds"):
        ensemble.predict(image, present, covariates, folds=[7])
    with pytest.raises(ValueError, match="read covariates"):
        ensemble.predict(image, present, None)
    meta = json.loads((folder / ENSEMBLE_FILE).read_text())
    meta["folds"][0]["weights"] = "../../outside.pt"
    (folder / ENSEMBLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="leaves the folder"):
        FoldEnsemble.load(folder)


def test_a_fold_without_saved_network_stops_the_assembly(tmp_path):
    net_cfg, parts = _fold_parts(tmp_path, n_folds=2, covariates=False)
    (parts[1][0] / "net.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"fold\(s\) \[1\]"):
        write_fold_ensemble(tmp_path / "e", {k: p[0] for k, p in parts.items()},
                            net_cfg=OmegaConf.to_container(net_cfg), channel_names=CHANNELS, patch_voxels=8,
                            spacing_mm=2.0, covariates=None, calibrations={}, model_name="m")
