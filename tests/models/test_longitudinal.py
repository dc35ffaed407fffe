"""Shared-encoder longitudinal networks: output shapes, the guarantee that an image flagged absent
cannot change a prediction, image dropout, and the covariate inputs."""

from __future__ import annotations

import pytest
import torch

from dlm_ml.models.encoders import conv_encoder
from dlm_ml.models.longitudinal import COVARIATE_FUSIONS, FUSIONS, CovariateNet, SharedEncoderNet, drop_images

EDGE = 8  # voxels per patch edge
BATCH = 5
TIMEPOINTS = ("baseline", "presurgery")
MODALITIES = ("ct", "adc")


def make_net(fusion: str = "concat_delta", timepoints=TIMEPOINTS, modalities=MODALITIES, n_covariates: int = 0,
             covariate_fusion: str = "concat", image_dropout: float = 0.0, seed: int = 0) -> SharedEncoderNet:
    """A tiny network: conv encoder with channels (4, 8) and 8 features on 8³ patches."""
    torch.manual_seed(seed)
    encoder = conv_encoder(EDGE, feature_dim=8, channels=(4, 8), strides=(2, 2))
    return SharedEncoderNet(encoder, list(timepoints), list(modalities), fusion=fusion, n_covariates=n_covariates,
                            covariate_fusion=covariate_fusion, hidden=8, dropout=0.2, image_dropout=image_dropout)


def make_batch(n_channels: int = 4, batch: int = BATCH, n_covariates: int = 0, seed: int = 1):
    """image [B, C, 8, 8, 8] with zeros where absent, present [B, C] (row 0 all present, row 1 none,
    the others mixed), covariates [B, K]."""
    g = torch.Generator().manual_seed(seed)
    present = torch.rand(batch, n_channels, generator=g) < 0.6
    present[0] = True
    if batch > 1:
        present[1] = False
    image = torch.randn(batch, n_channels, EDGE, EDGE, EDGE, generator=g) * present[..., None, None, None]
    covariates = torch.randn(batch, n_covariates, generator=g)
    return image, present, covariates


def absent_voxels_changed(image: torch.Tensor, present: torch.Tensor, seed: int = 2) -> torch.Tensor:
    """A copy of ``image`` whose absent channels hold large random values."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(image.shape, generator=g) * 1e4 + 1e3
    return torch.where(present[..., None, None, None], image, noise)


COVARIATE_CASES = [(None, 0), ("concat", 3), ("film", 3)]
REDUCED_LAYOUTS = [(TIMEPOINTS[:1], MODALITIES), (TIMEPOINTS, MODALITIES[:1]), (TIMEPOINTS[:1], MODALITIES[:1])]


@pytest.mark.parametrize(("covariate_fusion", "n_covariates"), COVARIATE_CASES,
                         ids=[f"{f}-{k}" for f, k in COVARIATE_CASES])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_output_is_one_logit_per_lesion(fusion, covariate_fusion, n_covariates):
    net = make_net(fusion, n_covariates=n_covariates, covariate_fusion=covariate_fusion or "concat").eval()
    image, present, covariates = make_batch(n_covariates=n_covariates)
    with torch.no_grad():
        out = net(image, present, covariates if n_covariates else None)
    assert out.shape == (BATCH,) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("layout", REDUCED_LAYOUTS, ids=lambda lay: f"T{len(lay[0])}M{len(lay[1])}")
@pytest.mark.parametrize("fusion", FUSIONS)
def test_single_timepoint_or_single_modality_layouts(fusion, layout):
    timepoints, modalities = layout
    net = make_net(fusion, timepoints, modalities, n_covariates=2, covariate_fusion="film").eval()
    image, present, covariates = make_batch(len(timepoints) * len(modalities), n_covariates=2)
    with torch.no_grad():
        out = net(image, present, covariates)
    assert out.shape == (BATCH,) and torch.isfinite(out).all()


def test_present_flags_default_to_all_present():
    net = make_net().eval()
    image, _, _ = make_batch()
    with torch.no_grad():
        assert torch.equal(net(image), net(image, torch.ones(BATCH, 4, dtype=torch.bool)))


def test_wrong_channel_count_or_present_shape_is_refused():
    net = make_net()
    image, present, _ = make_batch()
    with pytest.raises(ValueError, match="expected 4 channels"):
        net(image[:, :3], present[:, :3])
    with pytest.raises(ValueError, match="present"):
        net(image, present[:, :2])


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_absent_images_cannot_change_the_prediction(fusion, mode):
    """The voxels of an image flagged absent are never read: the output is bit-identical whatever
    they hold, in evaluation and in training (image dropout off, head dropout seeded alike)."""
    net = make_net(fusion, n_covariates=2).train(mode == "train")
    image, present, covariates = make_batch(n_covariates=2)
    assert (~present).any() and present.any()
    changed = absent_voxels_changed(image, present)
    assert not torch.equal(changed, image)
    outputs = []
    for x in (image, changed):
        torch.manual_seed(5)
        with torch.no_grad():
            outputs.append(net(x, present, covariates))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_present_images_do_change_the_prediction(fusion):
    """The counterpart of the invariance above: the test would pass trivially on a constant net."""
    net = make_net(fusion).eval()
    image, present, _ = make_batch()
    with torch.no_grad():
        base = net(image, present)
        other = net(image + 0.5 * present[..., None, None, None], present)
    assert not torch.equal(base[present.any(dim=1)], other[present.any(dim=1)])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_lesion_without_any_image_gets_a_finite_prediction(fusion):
    net = make_net(fusion).eval()
    image, present, _ = make_batch()
    with torch.no_grad():
        mixed = net(image, present)
        none_at_all = net(torch.zeros_like(image), torch.zeros_like(present))
    assert not present[1].any() and torch.isfinite(mixed).all() and torch.isfinite(none_at_all).all()


# --- image dropout -------------------------------------------------------------------------------

def random_present(rows: int = 400, channels: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    present = torch.rand(rows, channels, generator=g) < 0.5
    present[:50] = False
    present[:50, 0] = True  # lesions with exactly one image
    present[50:60] = False  # and with none
    return present


def test_drop_images_never_hides_the_last_present_image():
    present = random_present()
    for seed in range(20):
        torch.manual_seed(seed)
        kept = drop_images(present, 0.9)
        assert not (kept & ~present).any()  # only hides, never invents
        assert torch.equal(kept.any(dim=1), present.any(dim=1))
        assert torch.equal(kept[:50], present[:50])  # a lone image is always kept


def test_drop_images_with_probability_zero_is_the_identity():
    present = random_present()
    assert torch.equal(drop_images(present, 0.0), present)


def test_drop_images_is_seeded_by_torch():
    present = random_present()
    torch.manual_seed(11)
    first = drop_images(present, 0.4)
    torch.manual_seed(11)
    again = drop_images(present, 0.4)
    other = drop_images(present, 0.4)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_drop_images_rate():
    """With 4 images per lesion, an image is hidden with probability p minus the rare draws that
    would hide all four (restored): p - p⁴; a loose bound around p."""
    present = torch.ones(20_000, 4, dtype=torch.bool)
    torch.manual_seed(0)
    rate = 1 - drop_images(present, 0.3).float().mean().item()
    assert abs(rate - 0.3) < 0.02


def test_image_dropout_acts_in_training_only():
    net = make_net("masked_pool", image_dropout=0.5).train()
    image, present, _ = make_batch(batch=6)
    outputs = {}
    for p in (0.0, 0.5):
        net.image_dropout = p
        torch.manual_seed(3)
        with torch.no_grad():
            outputs[p] = net(image, present)
    assert not torch.equal(outputs[0.0], outputs[0.5])
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(image, present), net(image, present))


# --- covariates ----------------------------------------------------------------------------------

@pytest.mark.parametrize("covariate_fusion", COVARIATE_FUSIONS)
def test_covariates_of_the_wrong_width_or_none_are_refused(covariate_fusion):
    net = make_net(n_covariates=3, covariate_fusion=covariate_fusion)
    image, present, covariates = make_batch(n_covariates=3)
    with pytest.raises(ValueError, match="data/covariates"):
        net(image, present, None)
    with pytest.raises(ValueError, match=r"reads 3 covariates.*\(5, 2\).*data/covariates"):
        net(image, present, covariates[:, :2])
    with pytest.raises(ValueError, match="data/covariates"):
        net(image, present, covariates[:3])


def test_film_starts_as_the_identity():
    """FiLM's layer is zero-initialised: at initialisation the covariates change nothing."""
    net = make_net("attention", n_covariates=3, covariate_fusion="film").eval()
    image, present, covariates = make_batch(n_covariates=3)
    with torch.no_grad():
        assert torch.equal(net(image, present, covariates), net(image, present, torch.zeros_like(covariates)))
        torch.nn.init.normal_(net.film.weight)
        assert not torch.equal(net(image, present, covariates), net(image, present, torch.zeros_like(covariates)))


def test_concatenated_covariates_change_the_prediction():
    net = make_net(n_covariates=3, covariate_fusion="concat").eval()
    image, present, covariates = make_batch(n_covariates=3)
    with torch.no_grad():
        assert not torch.equal(net(image, present, covariates), net(image, present, covariates + 1))


def test_covariate_net_reads_covariates_only():
    torch.manual_seed(0)
    net = CovariateNet(n_covariates=3, hidden=8).eval()
    image, present, covariates = make_batch(n_covariates=3)
    with torch.no_grad():
        out = net(image, present, covariates)
        assert out.shape == (BATCH,) and torch.isfinite(out).all()
        assert torch.equal(out, net(torch.randn_like(image), None, covariates))
    with pytest.raises(ValueError, match="data/covariates"):
        net(image, present, None)


def test_covariate_net_without_covariates_is_refused():
    with pytest.raises(ValueError, match="data/covariates"):
        CovariateNet(n_covariates=0)


@pytest.mark.parametrize(("kwargs", "message"), [({"fusion": "sum"}, "fusion must be one of"),
                                                 ({"covariate_fusion": "add"}, "covariate_fusion must be one of"),
                                                 ({"image_dropout": 1.0}, "image_dropout")])
def test_bad_settings_are_refused(kwargs, message):
    encoder = conv_encoder(EDGE, feature_dim=8, channels=(4, 8), strides=(2, 2))
    with pytest.raises(ValueError, match=message):
        SharedEncoderNet(encoder, list(TIMEPOINTS), list(MODALITIES), **kwargs)
