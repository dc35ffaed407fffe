"""Saliency maps: shapes and channel handling for both network families, absent channels, the
ensemble average, the occlusion sign, networks left untouched, and the model-parameter
randomisation sanity test of Adebayo et al. (NeurIPS 2018)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from dlm_ml.models.encoders import conv_encoder
from dlm_ml.models.longitudinal import SharedEncoderNet
from dlm_ml.models.networks import small_cnn
from dlm_ml.models.saliency import SaliencyExplainer, lesion_saliency

EDGE = 8
NAMES = ["baseline_ct", "baseline_adc", "presurgery_ct", "presurgery_adc"]
PRESENT = np.array([True, False, True, True])


def stacked_net(seed: int = 0, edge: int = EDGE, channels: int = 4) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return small_cnn(channels, edge, channels=(4, 8), strides=(2, 2), dropout=0.0).eval()


def shared_net(seed: int = 0, n_covariates: int = 0, fusion: str = "concat_delta") -> SharedEncoderNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = conv_encoder(EDGE, feature_dim=8, channels=(4, 8), strides=(2, 2))
        return SharedEncoderNet(encoder, ["baseline", "presurgery"], ["ct", "adc"], fusion=fusion,
                                n_covariates=n_covariates, hidden=8, dropout=0.0).eval()


def lesion(seed: int = 3, present: np.ndarray = PRESENT) -> np.ndarray:
    """A [4, 8, 8, 8] patch of noise with the absent channels zero-filled, as the patches are."""
    image = np.random.default_rng(seed).normal(size=(4, EDGE, EDGE, EDGE)).astype(np.float32)
    image[~present] = 0.0
    return image


def saliency(nets, image=None, present=PRESENT, covariates=None, **options):
    return lesion_saliency(nets, lesion() if image is None else image, present, covariates, NAMES,
                           occlusion_mask_voxels=4, **options)


def test_stacked_cnn_gives_one_gradcam_map_and_per_channel_occlusion():
    result = saliency([stacked_net()])
    assert result.lesion_level == {"gradcam"} and result.channel_names == tuple(NAMES)
    for method in ("gradcam", "occlusion"):
        maps = result.maps[method]
        assert maps.shape == (4, EDGE, EDGE, EDGE) and maps.dtype == np.float32
        assert np.isnan(maps[1]).all(), "an absent channel has no map"
        assert np.isfinite(maps[PRESENT]).all()
    cam = result.maps["gradcam"]
    assert np.array_equal(cam[0], cam[2]) and np.array_equal(cam[0], cam[3])
    assert cam[PRESENT].min() >= 0 and cam[PRESENT].max() == pytest.approx(1.0)
    occlusion = result.maps["occlusion"]
    assert not np.allclose(occlusion[0], occlusion[2]), "each channel is occluded on its own"


def test_shared_encoder_gives_one_gradcam_map_per_present_image_in_channel_order():
    net = shared_net()
    image = lesion()
    result = saliency([net], image)
    assert result.lesion_level == frozenset()
    cam = result.maps["gradcam"]
    assert np.isnan(cam[1]).all() and np.isfinite(cam[PRESENT]).all()
    # Oracle: Grad-CAM by hand from the encoder's last stage, whose rows are recomputed one image
    # at a time (the encoder in eval mode is per-image), so the row → channel order is checked
    # independently of how the network batches its present images.
    stage = net.encoder.body.net
    captured = {}
    handle = stage.register_forward_hook(lambda _m, _i, out: captured.__setitem__("acts", out))
    x = torch.from_numpy(image)[None]
    logit = net(x, torch.from_numpy(PRESENT)[None], None)
    handle.remove()
    acts = captured["acts"]
    grads, = torch.autograd.grad(logit.sum(), acts)
    expected = F.relu((grads.mean(dim=(2, 3, 4), keepdim=True) * acts).sum(1, keepdim=True))
    expected = F.interpolate(expected, size=(EDGE,) * 3, mode="trilinear", align_corners=False)[:, 0].detach()
    expected = (expected / expected.max()).numpy()
    for row, channel in enumerate(np.flatnonzero(PRESENT)):
        with torch.no_grad():
            alone = stage(x[:, channel:channel + 1])
        torch.testing.assert_close(acts[row], alone[0])
        np.testing.assert_allclose(cam[channel], expected[row], atol=1e-5)
    assert not np.allclose(cam[0], cam[2])


def test_shared_encoder_reads_bound_covariates_and_one_present_image():
    net = shared_net(n_covariates=3, fusion="attention")
    present = np.array([False, False, True, False])
    result = saliency([net], lesion(present=present), present, covariates=[np.ones(3, np.float32)])
    for maps in result.maps.values():
        assert np.isfinite(maps[2]).all() and np.isnan(maps[[0, 1, 3]]).all()
    other = saliency([net], lesion(present=present), present, covariates=[-np.ones(3, np.float32)])
    assert not np.allclose(result.maps["occlusion"][2], other.maps["occlusion"][2])


def test_no_present_image_gives_nan_maps():
    absent = np.zeros(4, dtype=bool)
    result = saliency([shared_net()], np.zeros((4, EDGE, EDGE, EDGE), np.float32), absent)
    assert all(np.isnan(m).all() for m in result.maps.values())


@pytest.mark.parametrize("make", [stacked_net, shared_net], ids=["stacked", "shared_encoder"])
def test_ensemble_averages_normalised_gradcam_and_raw_occlusion(make):
    nets = [make(seed=1), make(seed=2)]
    singles = [saliency([n]) for n in nets]
    both = saliency(nets)
    # Grad-CAM: each network's map scaled to its maximum over the lesion, then averaged;
    # occlusion (probability units): averaged as it is.
    cams = [s.maps["gradcam"] / np.nanmax(s.maps["gradcam"]) for s in singles]
    np.testing.assert_allclose(both.maps["gradcam"], (cams[0] + cams[1]) / 2, atol=1e-6)
    occlusions = [s.maps["occlusion"] for s in singles]
    np.testing.assert_allclose(both.maps["occlusion"], (occlusions[0] + occlusions[1]) / 2, atol=1e-6)
    assert both.lesion_level == singles[0].lesion_level


class RegionNet(nn.Module):
    """logit = mean of channel 0 inside ``region`` (through a 1×1×1 convolution) + sum of the
    covariates; channel 1 is ignored."""

    def __init__(self, region: np.ndarray):
        super().__init__()
        self.conv = nn.Conv3d(2, 1, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1, 1))
        self.register_buffer("region", torch.from_numpy(region.astype(np.float32)))

    def forward(self, image, present=None, covariates=None):
        inside = (self.conv(image)[:, 0] * self.region).sum(dim=(1, 2, 3)) / self.region.sum()
        return inside + covariates.sum(dim=1)


def test_occlusion_is_the_drop_in_probability_where_the_image_supports_pcr():
    region = np.zeros((12, 12, 12), dtype=bool)
    region[1:4, 1:4, 1:4] = True
    image = np.zeros((2, 12, 12, 12), np.float32)
    image[0][region] = 2.0  # raises the logit: hiding it lowers P(pCR)
    image[1] = 5.0
    result = lesion_saliency([RegionNet(region)], image, np.array([True, True]), [np.array([-1.0], np.float32)],
                             ["presurgery_ct", "presurgery_adc"], occlusion_mask_voxels=4)
    occlusion = result.maps["occlusion"]
    p, p_hidden = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))
    assert occlusion[0][2, 2, 2] > 0.2 * (p - p_hidden), "hiding the region lowers P(pCR): positive"
    assert occlusion[0][region].min() > 0
    assert np.abs(occlusion[0][8:, 8:, 8:]).max() == 0, "far from the region nothing changes"
    assert np.abs(occlusion[1]).max() == 0, "the ignored channel has no influence"
    assert result.maps["gradcam"].shape == image.shape  # the 1×1×1 conv output is the target layer


def test_networks_are_left_untouched_and_runs_are_deterministic():
    nets = [stacked_net(), shared_net()]
    nets[0].train()
    before = [copy.deepcopy(n.state_dict()) for n in nets]
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    explainer = SaliencyExplainer(nets, occlusion_mask_voxels=4)
    first = explainer(lesion(), PRESENT, None, NAMES)
    second = explainer(lesion(), PRESENT, None, NAMES)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:3], numpy_state[1:3], strict=True))
    for method in first.maps:
        np.testing.assert_array_equal(first.maps[method], second.maps[method])
    assert nets[0].training and not nets[1].training
    for net, state in zip(nets, before, strict=True):
        for key, value in net.state_dict().items():
            assert torch.equal(value, state[key]), key
        for name, module in net.named_modules():
            assert not module._forward_hooks and not module._backward_hooks, f"a hook left on {name!r}"
        assert all(p.grad is None for p in net.parameters())


def test_default_and_chosen_gradcam_layers():
    for net, layer in ((stacked_net(), "net.net"), (shared_net(), "encoder.body.net")):
        explainer = SaliencyExplainer([net], methods=("gradcam",))
        explainer(lesion(), PRESENT, None, NAMES)
        assert explainer._nets[0].layer == layer
    chosen = saliency([shared_net()], methods=("gradcam",), gradcam_layer="encoder.body.net.layer_0")
    assert np.isfinite(chosen.maps["gradcam"][PRESENT]).all()
    with pytest.raises(ValueError, match="'encoder.nope' is not a module"):
        saliency([shared_net()], methods=("gradcam",), gradcam_layer="encoder.nope")
    with pytest.raises(ValueError, match="'head' does not output a 3-D feature map"):
        saliency([shared_net()], methods=("gradcam",), gradcam_layer="head")


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 networks but 1 covariate vectors"):
        saliency([stacked_net(), stacked_net()], covariates=[np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="methods must be"):
        saliency([stacked_net()], methods=("lime",))
    with pytest.raises(ValueError, match="exceeds the patch"):
        lesion_saliency([stacked_net()], lesion(), PRESENT, None, NAMES, occlusion_mask_voxels=9)
    with pytest.raises(ValueError, match="4 names"):
        lesion_saliency([stacked_net()], lesion()[:3], PRESENT, None, NAMES)


# --- model-parameter randomisation test (Adebayo et al. 2018) -----------------------------------

SANITY_EDGE = 12
#: The pCR signal: a bright sphere (radius 2 voxels) in channel 1, placed inside one cell of the
#: network's 3³ feature grid (voxels 8-11 along x), so even coarse Grad-CAM can resolve it.
_Z, _Y, _X = np.mgrid[:SANITY_EDGE, :SANITY_EDGE, :SANITY_EDGE]
BLOB = (_Z - 2) ** 2 + (_Y - 2) ** 2 + (_X - 9) ** 2 <= 4
BLOB_FRACTION = BLOB.sum() / BLOB.size  # of one channel's volume: 33 / 1728 ≈ 1.9 %


def sanity_patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 2, 12, 12, 12] noise (SD 0.5); the pCR lesions (every second one) carry the blob (+1.5)."""
    label = np.arange(n) % 2
    image = np.random.default_rng(seed).normal(0.0, 0.5, size=(n, 2, *BLOB.shape)).astype(np.float32)
    image[label == 1, 1] += 1.5 * BLOB
    return image, label.astype(np.float32)


def blob_share(maps: np.ndarray) -> float:
    """Share of the positive saliency mass (over both channels) that lies in the blob of the
    channel that carries it; 0 where the map has no positive mass."""
    positive = np.clip(np.nan_to_num(maps), 0.0, None)
    total = positive.sum()
    return float(positive[1][BLOB].sum() / total) if total > 0 else 0.0


@pytest.fixture(scope="module")
def trained_and_randomised():
    """A small_cnn trained for six epochs on 64 patches (a few seconds on a CPU), and a copy whose
    every parameter and buffer is re-initialised (model-parameter randomisation)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = small_cnn(2, SANITY_EDGE, channels=(4, 8), strides=(2, 2), dropout=0.0)
        x, y = (torch.from_numpy(a) for a in sanity_patches(64, seed=0))
        optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
        net.train()
        for _ in range(6):
            order = torch.randperm(len(x))
            for start in range(0, len(x), 16):
                batch = order[start:start + 16]
                loss = F.binary_cross_entropy_with_logits(net(x[batch]), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        net.eval()
        randomised = copy.deepcopy(net)
        torch.manual_seed(1)
        for module in randomised.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return net, randomised


def test_trained_network_separates_the_synthetic_lesions(trained_and_randomised):
    net, _ = trained_and_randomised
    x, y = sanity_patches(40, seed=5)
    with torch.no_grad():
        prob = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    assert ((prob > 0.5) == y).mean() >= 0.9


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_maps_follow_the_signal_and_vanish_when_the_weights_are_randomised(trained_and_randomised, method):
    """Over the four pCR lesions of a held-out set, on average:

    - trained: the map concentrates on the blob, its share of the positive saliency at least 4×
      the blob's share of the volume (measured: Grad-CAM ≈ 8-11×, occlusion ≈ 25×);
    - randomised: that share at least halves (measured: to 0.15-0.3 of the trained share), and
      the Spearman rank correlation of trained and randomised maps is below 0.5, at least half way
      from identical maps (1) to unrelated ones (0). Coarse maps of any two networks correlate a
      little through shared structure (borders, zero padding, the trilinear upsampling of a 3³
      grid); measured here: Grad-CAM 0.35, occlusion 0.13 (single lesions up to 0.6)."""
    net, randomised = trained_and_randomised
    x, y = sanity_patches(8, seed=7)
    present, names = np.array([True, True]), ["presurgery_ct", "presurgery_adc"]
    shares, random_shares, rhos = [], [], []
    for image in x[y == 1]:
        trained_map, random_map = (lesion_saliency([model], image, present, None, names, methods=(method,),
                                                   occlusion_mask_voxels=4).maps[method]
                                   for model in (net, randomised))
        shares.append(blob_share(trained_map))
        random_shares.append(blob_share(random_map))
        rhos.append(spearmanr(trained_map.ravel(), random_map.ravel())[0])
    share_volume = BLOB_FRACTION / 2  # the blob's share of both channels' volume
    assert np.mean(shares) >= 4 * share_volume
    assert np.mean(random_shares) <= 0.5 * np.mean(shares)
    assert np.mean(rhos) < 0.5
