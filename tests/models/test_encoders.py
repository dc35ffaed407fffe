"""One-channel image encoders: output widths, and strict loading of local weights files (plain,
``body.``-prefixed, MedicalNet-style), refusing any file that does not fit, by key."""

from __future__ import annotations

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.models.encoders import (
    ImageEncoder,
    WeightsMismatchError,
    conv_encoder,
    load_encoder_weights,
    resnet_encoder,
)

EDGE = 8


def small_conv(seed: int, feature_dim: int = 16, channels=(4, 8), weights=None) -> ImageEncoder:
    torch.manual_seed(seed)
    return conv_encoder(EDGE, feature_dim=feature_dim, channels=channels, strides=(2, 2), weights=weights)


def resnet10(seed: int, weights=None) -> ImageEncoder:
    torch.manual_seed(seed)
    return resnet_encoder(EDGE, depth=10, weights=weights)


def patches(n: int = 3, edge: int = EDGE) -> torch.Tensor:
    return torch.randn(n, 1, edge, edge, edge, generator=torch.Generator().manual_seed(0))


def outputs(encoder: ImageEncoder, x: torch.Tensor) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return encoder(x)


@pytest.fixture(scope="module")
def resnet_pair() -> tuple[ImageEncoder, ImageEncoder]:
    """Two ResNet-10 encoders with different random weights (built once: the slowest part)."""
    return resnet10(0), resnet10(1)


def test_conv_encoder_output_width():
    out = outputs(small_conv(0), patches())
    assert out.shape == (3, 16) and torch.isfinite(out).all()


def test_resnet10_encoder_output_width(resnet_pair):
    encoder, _ = resnet_pair
    assert encoder.feature_dim == 512
    out = outputs(encoder, patches(2))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_unknown_resnet_depth_is_refused():
    with pytest.raises(ValueError, match="depth must be one of"):
        resnet_encoder(EDGE, depth=11)


@pytest.mark.parametrize("saved", ["body", "encoder"])
def test_weights_file_loads_strictly_and_reproduces_the_encoder(saved, tmp_path):
    source = small_conv(0)
    path = tmp_path / "encoder.pt"
    torch.save(source.body.state_dict() if saved == "body" else source.state_dict(), path)
    x = patches()
    fresh = small_conv(1)
    assert not torch.equal(outputs(fresh, x), outputs(source, x))
    assert load_encoder_weights(fresh, path) == []
    assert torch.equal(outputs(fresh, x), outputs(source, x))
    # The factory's weights= does the same.
    assert torch.equal(outputs(small_conv(2, weights=str(path)), x), outputs(source, x))


def test_medicalnet_checkpoint_loads_with_its_head_set_aside(tmp_path, resnet_pair):
    """A MedicalNet file: ``{"state_dict": ...}`` saved from nn.DataParallel (``module.`` keys) with
    its segmentation head ``conv_seg``; built here from a random ResNet-10."""
    source, fresh = resnet_pair
    state = {f"module.{k}": v for k, v in source.body.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(32, 512, 3, 3, 3)
    path = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": state}, path)
    x = patches(2)
    assert not torch.equal(outputs(fresh, x), outputs(source, x))
    assert load_encoder_weights(fresh, path) == ["module.conv_seg.0.weight"]
    assert torch.equal(outputs(fresh, x), outputs(source, x))


def _save(tmp_path, state: dict) -> str:
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    return str(path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = small_conv(0).body.state_dict()
    dropped = sorted(state)[0]
    state.pop(dropped)
    state["extra.layer.weight"] = torch.zeros(3)
    path = _save(tmp_path, state)
    with pytest.raises(WeightsMismatchError) as err:
        load_encoder_weights(small_conv(1), path)
    message = str(err.value)
    assert path in message and f"missing keys (1): {dropped}" in message
    assert "unexpected keys (1): extra.layer.weight" in message


def test_shape_mismatch_is_named(tmp_path):
    """Weights of a wider encoder: every key exists, the convolution shapes differ."""
    path = _save(tmp_path, small_conv(0, channels=(6, 8)).body.state_dict())
    target = small_conv(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match=r"shape mismatches \(\d+\): .*\(file \(6, 1, 3, 3, 3\), "
                                                   r"encoder \(4, 1, 3, 3, 3\)\)") as err:
        load_encoder_weights(target, path)
    assert "missing keys" not in str(err.value) and "unexpected keys" not in str(err.value)
    # Refused before anything was copied.
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_a_classification_head_alone_is_not_enough(tmp_path):
    """Only head keys in the file: every encoder key is missing."""
    path = _save(tmp_path, {"fc.weight": torch.zeros(1, 16)})
    with pytest.raises(WeightsMismatchError, match="missing keys"):
        load_encoder_weights(small_conv(0), path)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "resnet_10.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet_10.pth"):
        load_encoder_weights(small_conv(0), path)
    with pytest.raises(FileNotFoundError, match="nowhere/resnet_10.pth"):
        small_conv(0, weights=str(path))


class _NotATensor:
    pass


@pytest.mark.parametrize("content", ["random bytes", "pickled object", "plain list", "non-tensor entry"])
def test_a_file_that_is_not_a_state_dict_is_refused(content, tmp_path):
    path = tmp_path / "weights.pt"
    if content == "random bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif content == "pickled object":  # weights_only refuses to unpickle a class
        torch.save({"weight": _NotATensor()}, path)
    elif content == "plain list":
        torch.save([torch.zeros(2)], path)
    else:
        state = small_conv(0).body.state_dict()
        state["note"] = 3
        torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match="weights.pt|note"):
        load_encoder_weights(small_conv(0), path)


def test_weights_load_through_the_hydra_encoder_node(tmp_path):
    """``model=longitudinal model.net.encoder.weights=FILE``: the composed encoder node (and the
    network built around it) starts from the file's weights."""
    def compose_train(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=["model=longitudinal", *overrides])

    cfg = compose_train()
    torch.manual_seed(0)
    source = hydra.utils.instantiate(cfg.model.net.encoder)
    path = tmp_path / "conv encoder.pt"
    torch.save(source.body.state_dict(), path)
    edge = source.body.in_shape[-1]
    x = patches(2, edge)

    cfg = compose_train(f"model.net.encoder.weights='{path}'")
    torch.manual_seed(1)
    loaded = hydra.utils.instantiate(cfg.model.net.encoder)
    assert torch.equal(outputs(loaded, x), outputs(source, x))
    torch.manual_seed(2)
    net = hydra.utils.instantiate(cfg.model.net)
    assert torch.equal(outputs(net.encoder, x), outputs(source, x))
    # Without the file the same seed gives other weights: the equality above is the file's doing.
    cfg = compose_train()
    torch.manual_seed(1)
    assert not torch.equal(outputs(hydra.utils.instantiate(cfg.model.net.encoder), x), outputs(source, x))
