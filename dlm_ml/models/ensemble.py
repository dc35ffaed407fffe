"""A run's fold models as one predictor: each fold's trained network, its covariate encoding and its
post-hoc calibration, stored as plain files (tensors and JSON, nothing pickled) and averaged.

Layout of an ensemble folder (:func:`write_fold_ensemble`, read by :meth:`FoldEnsemble.load`)::

    ensemble.json        what every fold needs: the network config, the input channels and patch
                         geometry, the covariate columns; per fold its encoder state, its
                         calibration map and its weights file
    fold_<k>/net.pt      the fold's network ``state_dict`` (read with ``weights_only=True``)

Each fold's training writes its part with :func:`save_fold_predictor` (weights of the epoch that
predicted, encoder fitted on its fit lesions); calibration is fitted after the fold loop, so the
folder is assembled once every fold has finished.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlm_ml.data.covariates import CovariateConfig, CovariateEncoder
from dlm_ml.models.build import build_network, handles_missing_images, without_start_weights
from dlm_ml.models.calibration import FittedCalibration
from dlm_ml.utils.atomic import atomic_path, atomic_write_json

ENSEMBLE_FILE = "ensemble.json"
WEIGHTS_FILE = "net.pt"
ENCODER_FILE = "covariate_encoder.json"
#: Bumped when the folder layout or a field's meaning changes; an unknown format is refused.
ENSEMBLE_FORMAT = 1
#: Test-time augmentation: the identity and a flip of each spatial axis of [B, C, D, H, W].
FLIP_DIMS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


def save_fold_predictor(fold_dir: str | Path, net: torch.nn.Module, encoder: CovariateEncoder | None) -> Path:
    """Write one fold's network weights and covariate encoding to ``fold_dir`` (atomically, so a
    stopped job never leaves a half-written file that a later assembly would trust)."""
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(fold_dir / WEIGHTS_FILE) as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    atomic_write_json(fold_dir / ENCODER_FILE, None if encoder is None else encoder.state())
    return fold_dir


def write_fold_ensemble(out_dir: str | Path, fold_dirs: dict[int, Path], *, net_cfg: dict, channel_names: Sequence[str],
                        patch_voxels: int, spacing_mm: float, covariates: CovariateConfig | None,
                        calibrations: dict[int, FittedCalibration], model_name: str) -> Path:
    """Assemble the ensemble folder from each fold's :func:`save_fold_predictor` files.

    ``net_cfg``: the resolved ``model.net`` config (``n_covariates`` is set per fold from its
    encoder); ``calibrations``: the fitted map of each fold (absent: none)."""
    out_dir = Path(out_dir)
    missing = [k for k, d in fold_dirs.items() if not (Path(d) / WEIGHTS_FILE).is_file()]
    if missing:
        raise FileNotFoundError(f"fold(s) {missing} have no saved network ({WEIGHTS_FILE}); the ensemble cannot be "
                                "assembled (were they trained by an older version? train them again)")
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = []
    for fold, fold_dir in sorted(fold_dirs.items()):
        state = json.loads((Path(fold_dir) / ENCODER_FILE).read_text())
        target = out_dir / f"fold_{fold}" / WEIGHTS_FILE
        target.parent.mkdir(exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(Path(fold_dir) / WEIGHTS_FILE, tmp)
        calibration = calibrations.get(fold, FittedCalibration("none"))
        folds.append({"fold": int(fold), "weights": f"fold_{fold}/{WEIGHTS_FILE}",
                      "covariate_encoder": state, "calibration": calibration.to_dict()})
    net = build_network(without_start_weights(net_cfg), _n_covariates(folds[0]["covariate_encoder"]))
    atomic_write_json(out_dir / ENSEMBLE_FILE, {
        "format": ENSEMBLE_FORMAT, "model_name": model_name, "net": without_start_weights(net_cfg),
        "channel_names": list(channel_names), "patch_voxels": int(patch_voxels), "spacing_mm": float(spacing_mm),
        "covariates": None if not covariates else {"numeric": list(covariates.numeric),
                                                   "log_numeric": list(covariates.log_numeric),
                                                   "categorical": list(covariates.categorical)},
        "handles_missing_images": handles_missing_images(net), "folds": folds})
    return out_dir


def _encoder(state: dict | None) -> CovariateEncoder | None:
    return None if state is None else CovariateEncoder.from_state(state)


def _n_covariates(state: dict | None) -> int:
    """The encoded width K a fold's network reads, from its encoder state (0 without covariates)."""
    encoder = _encoder(state)
    return 0 if encoder is None else encoder.n_features


@dataclass
class FoldModel:
    fold: int
    net: torch.nn.Module
    encoder: CovariateEncoder | None
    calibration: FittedCalibration


@dataclass
class EnsemblePrediction:
    """Probabilities of N lesions by F fold models: ``raw`` and ``calibrated`` [N, F] (column j is
    fold ``folds[j]``). ``prob_pcr``: the mean of the calibrated probabilities [N]."""

    folds: list[int]
    raw: np.ndarray
    calibrated: np.ndarray

    @property
    def prob_pcr(self) -> np.ndarray:
        return self.calibrated.mean(axis=1)

    @property
    def prob_pcr_uncalibrated(self) -> np.ndarray:
        return self.raw.mean(axis=1)

    @property
    def spread(self) -> np.ndarray:
        """Standard deviation over the folds' calibrated probabilities (0 with one fold) [N]."""
        return self.calibrated.std(axis=1, ddof=1) if self.calibrated.shape[1] > 1 else np.zeros(len(self.calibrated))

    def columns(self) -> dict[str, np.ndarray]:
        """The per-lesion columns every prediction output reports, in order: ``prob_pcr``,
        ``prob_pcr_uncalibrated``, ``prob_pcr_sd``, ``prob_pcr_fold_<k>``."""
        return {"prob_pcr": self.prob_pcr, "prob_pcr_uncalibrated": self.prob_pcr_uncalibrated,
                "prob_pcr_sd": self.spread,
                **{f"prob_pcr_fold_{k}": self.calibrated[:, j] for j, k in enumerate(self.folds)}}


class FoldEnsemble:
    """The fold models of a run (:meth:`load` an ensemble folder).

    Attributes: ``channel_names`` (C input channels, timepoint-major), ``patch_voxels`` (D = H = W),
    ``spacing_mm``, ``covariates`` (the raw columns the encoders read, or None),
    ``handles_missing_images``, ``models`` (one :class:`FoldModel` per fold), ``model_name``.
    """

    def __init__(self, meta: dict, models: list[FoldModel]):
        self.meta, self.models = meta, models
        self.channel_names: list[str] = list(meta["channel_names"])
        self.patch_voxels, self.spacing_mm = int(meta["patch_voxels"]), float(meta["spacing_mm"])
        self.covariates = CovariateConfig(**meta["covariates"]) if meta.get("covariates") else None
        self.handles_missing_images = bool(meta["handles_missing_images"])
        self.model_name = str(meta.get("model_name", "model"))

    @classmethod
    def load(cls, folder: str | Path) -> FoldEnsemble:
        folder = Path(folder)
        path = folder / ENSEMBLE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a fold ensemble: no {ENSEMBLE_FILE}")
        meta = json.loads(path.read_text())
        if meta.get("format") != ENSEMBLE_FORMAT:
            raise ValueError(f"{path}: ensemble format {meta.get('format')!r}, this version reads {ENSEMBLE_FORMAT}")
        models = []
        for fold in meta["folds"]:
            encoder = _encoder(fold["covariate_encoder"])
            net = build_network(meta["net"], 0 if encoder is None else encoder.n_features)
            weights = (folder / fold["weights"]).resolve()
            if folder.resolve() not in weights.parents:
                raise ValueError(f"{path}: fold {fold['fold']} weights path {fold['weights']!r} leaves the folder")
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            net.eval()
            models.append(FoldModel(int(fold["fold"]), net, encoder, FittedCalibration.from_dict(fold["calibration"])))
        return cls(meta, models)

    @property
    def folds(self) -> list[int]:
        return [m.fold for m in self.models]

    def check_inputs(self, image: np.ndarray, present: np.ndarray) -> None:
        """Refuse patches of another shape than the models were trained on."""
        c, s = len(self.channel_names), self.patch_voxels
        if image.ndim != 5 or image.shape[1:] != (c, s, s, s) or present.shape != image.shape[:2]:
            raise ValueError(f"the fold models read patches [N, {c}, {s}, {s}, {s}] (channels {self.channel_names}) "
                             f"and present flags [N, {c}]; got {tuple(image.shape)} and {tuple(present.shape)}")

    def predict(self, image: np.ndarray, present: np.ndarray, covariates: pd.DataFrame | None = None, *,
                folds: Sequence[int] | None = None, flip_tta: bool = False, batch_size: int = 32) -> EnsemblePrediction:
        """P(pCR) of N lesions by each fold model.

        image float32 [N, C, D, H, W] (normalised patches); present bool [N, C]; covariates: the raw
        columns of :attr:`covariates`, one row per lesion (as
        :func:`~dlm_ml.data.covariates.covariate_table` gives them), encoded by each fold's own
        encoder. ``folds``: use these folds only (default all). ``flip_tta``: average each fold's
        probability over the identity and a flip of each spatial axis, before its calibration.
        """
        self.check_inputs(image, present)
        wanted = None if folds is None else {int(f) for f in folds}
        chosen = [m for m in self.models if wanted is None or m.fold in wanted]
        unknown = sorted((wanted or set()) - set(self.folds))
        if unknown or not chosen:
            raise ValueError(f"fold(s) {unknown or list(folds or [])} are not among the ensemble's folds {self.folds}")
        if self.covariates and covariates is None:
            raise ValueError(f"the fold models read covariates {list(self.covariates.columns)}; none were given")
        raw = np.column_stack([self._fold_probabilities(m, image, present, covariates, flip_tta, batch_size)
                               for m in chosen])
        calibrated = np.column_stack([m.calibration.apply(raw[:, j]) for j, m in enumerate(chosen)])
        return EnsemblePrediction([m.fold for m in chosen], raw, calibrated)

    @staticmethod
    def _fold_probabilities(model: FoldModel, image: np.ndarray, present: np.ndarray, covariates, flip_tta: bool,
                            batch_size: int) -> np.ndarray:
        n = len(image)
        encoded = (np.zeros((n, 0), np.float32) if model.encoder is None
                   else model.encoder.transform(covariates))
        flips = FLIP_DIMS if flip_tta else FLIP_DIMS[:1]
        out = np.zeros(n)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                rows = slice(start, start + batch_size)
                x = torch.from_numpy(np.ascontiguousarray(image[rows], dtype=np.float32))
                p = torch.from_numpy(np.asarray(present[rows], dtype=bool))
                k = torch.from_numpy(np.ascontiguousarray(encoded[rows], dtype=np.float32))
                probs = [torch.sigmoid(model.net(torch.flip(x, dims) if dims else x, p, k).float()).numpy()
                         .astype(float) for dims in flips]
                out[rows] = np.mean(probs, axis=0)
        return out
