"""One-channel 3-D image encoders: one patch [N, 1, D, H, W] → one feature vector [N, F].

A shared-encoder model (:mod:`dlm_ml.models.longitudinal`) applies the same encoder to every
(timepoint, modality) image of a lesion. Each factory returns an :class:`ImageEncoder`, which
knows its ``feature_dim`` and can start from weights in a local file (``weights=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from monai.networks import nets
from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args
from torch import nn

#: Keys of a MedicalNet checkpoint's segmentation head (``conv_seg``) and of a classification
#: head (``fc``): they are not part of an encoder and are set aside, by name, when loading.
HEAD_PREFIXES: tuple[str, ...] = ("conv_seg.", "fc.")


class ImageEncoder(nn.Module):
    """``body`` maps [N, 1, D, H, W] to [N, feature_dim] (flattened if it returns more axes)."""

    def __init__(self, body: nn.Module, feature_dim: int):
        super().__init__()
        self.body = body
        self.feature_dim = int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).reshape(x.shape[0], self.feature_dim)


class WeightsMismatchError(ValueError):
    """A weights file does not fit the encoder: lists the missing, unexpected and mis-shaped keys."""


def conv_encoder(patch_voxels: int, feature_dim: int = 32, channels=(16, 32, 64), strides=(2, 2, 2),
                 num_res_units: int = 1, dropout: float = 0.0, weights: str | None = None) -> ImageEncoder:
    """MONAI ``Regressor``: residual convolution stages with stride-2 downsampling, then a linear
    layer to ``feature_dim`` features. Small enough to run on every image of a lesion on a CPU."""
    body = nets.Regressor(in_shape=(1, patch_voxels, patch_voxels, patch_voxels), out_shape=(feature_dim,),
                          channels=tuple(channels), strides=tuple(strides), num_res_units=num_res_units,
                          dropout=dropout, norm="BATCH")
    return _with_weights(ImageEncoder(body, feature_dim), weights)


#: Feature width of MONAI's 3-D ResNets after global pooling: 512 × block expansion.
RESNET_FEATURES = {10: 512, 18: 512, 34: 512, 50: 2048}


def resnet_encoder(patch_voxels: int, depth: int = 10, weights: str | None = None) -> ImageEncoder:
    """MONAI 3-D ResNet without its classification layer (global-pooled features: 512 for depth 10,
    18, 34; 2048 for 50), built with MedicalNet's shortcut type and downsampling bias for the depth,
    so a MedicalNet checkpoint (Chen et al. 2019, trained on 1-channel CT/MR) loads with ``weights=``.
    ``patch_voxels`` is unused (global pooling)."""
    if depth not in RESNET_FEATURES:
        raise ValueError(f"resnet encoder depth must be one of {sorted(RESNET_FEATURES)}, got {depth}")
    bias_downsample, shortcut_type = get_medicalnet_pretrained_resnet_args(depth)
    factory = {10: nets.resnet10, 18: nets.resnet18, 34: nets.resnet34, 50: nets.resnet50}[depth]
    body = factory(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type=shortcut_type,
                   bias_downsample=bias_downsample)
    return _with_weights(ImageEncoder(body, RESNET_FEATURES[depth]), weights)


def _with_weights(encoder: ImageEncoder, weights: str | None) -> ImageEncoder:
    if weights:
        load_encoder_weights(encoder, weights)
    return encoder


def encoder_state_dict(raw: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The encoder's part of a checkpoint's state dict, in the encoder's ``body`` key space.

    Accepts the plain state dict of an encoder's body, one saved from an :class:`ImageEncoder`
    (``body.`` prefix), and MedicalNet files (``{"state_dict": ...}`` saved from
    ``nn.DataParallel``: ``module.`` prefix). Head keys (``conv_seg.``, ``fc.``) are returned
    separately as set aside.
    """
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    state, set_aside = {}, []
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsMismatchError(f"entry {key!r} is not a tensor ({type(value).__name__})")
        name = key.removeprefix("module.").removeprefix("body.")
        if name.startswith(HEAD_PREFIXES):
            set_aside.append(key)
            continue
        state[name] = value
    return state, set_aside


def load_encoder_weights(encoder: ImageEncoder, path: str | Path) -> list[str]:
    """Load a local weights file into ``encoder`` strictly: every encoder parameter and buffer
    must be in the file with its shape, and the file may hold nothing else but a head.

    The file is read with ``torch.load(weights_only=True)`` (tensors only, no pickled code).
    Returns the head keys set aside. Raises ``FileNotFoundError`` for a missing file and
    :class:`WeightsMismatchError` naming the missing, unexpected and mis-shaped keys.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a non-checkpoint file
        raise WeightsMismatchError(f"{path}: not a tensor checkpoint torch can load safely ({err})") from err
    if not isinstance(raw, Mapping):
        raise WeightsMismatchError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    state, set_aside = encoder_state_dict(raw)
    expected = encoder.body.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(f"{k} (file {tuple(state[k].shape)}, encoder {tuple(expected[k].shape)})"
                       for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:12])}{' …' if len(keys) > 12 else ''}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", misshaped)) if keys]
        raise WeightsMismatchError(f"{path} does not fit the {type(encoder.body).__name__} encoder: "
                                   + "; ".join(parts))
    encoder.body.load_state_dict(state, strict=True)
    return set_aside
