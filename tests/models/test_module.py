"""PCRClassifier: the three losses, and the network inputs it passes on (image, present flags,
covariates)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce_with_logits

from dlm_ml.models.module import LOSSES, PCRClassifier


class RecordingNet(nn.Module):
    """Returns the mean of each lesion's image as its logit and remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, image, present=None, covariates=None):
        self.calls.append((image, present, covariates))
        return image.flatten(1).mean(dim=1)


LOGITS = torch.tensor([2.5, -1.0, 0.3, -3.0, 4.0, 0.0])
LABELS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])


def loss_of(loss: str, pos_weight: float = 4.0, focal_gamma: float = 2.0, logits=LOGITS, labels=LABELS):
    module = PCRClassifier(RecordingNet(), pos_weight=pos_weight, loss=loss, focal_gamma=focal_gamma)
    return module._loss(logits, labels)


def test_every_loss_is_tested():
    assert set(LOSSES) == {"weighted_bce", "bce", "focal"}


def test_weighted_bce_is_torch_bce_with_pos_weight():
    expected = bce_with_logits(LOGITS, LABELS, pos_weight=torch.tensor(4.0))
    assert torch.allclose(loss_of("weighted_bce"), expected)
    assert not torch.allclose(expected, bce_with_logits(LOGITS, LABELS))


def test_bce_ignores_pos_weight():
    assert torch.allclose(loss_of("bce", pos_weight=4.0), bce_with_logits(LOGITS, LABELS))
    assert torch.equal(loss_of("bce", pos_weight=4.0), loss_of("bce", pos_weight=0.25))


def test_focal_with_gamma_zero_is_unweighted_bce():
    assert torch.allclose(loss_of("focal", pos_weight=4.0, focal_gamma=0.0), bce_with_logits(LOGITS, LABELS))


def test_focal_down_weights_confident_correct_lesions():
    logits, labels = torch.tensor([4.0, -3.0, 5.0]), torch.tensor([1.0, 0.0, 1.0])
    focal = loss_of("focal", focal_gamma=2.0, logits=logits, labels=labels)
    assert 0 < focal < bce_with_logits(logits, labels)
    # Per lesion: (1 - p_true)^γ × BCE.
    p_true = torch.sigmoid(torch.tensor([4.0, 3.0, 5.0]))
    assert torch.allclose(focal, ((1 - p_true) ** 2 * -torch.log(p_true)).mean())


def test_losses_are_computed_in_float32_from_half_precision_logits():
    logits = LOGITS.to(torch.bfloat16)
    for loss in LOSSES:
        assert loss_of(loss, logits=logits).dtype == torch.float32


@pytest.mark.parametrize(("kwargs", "message"), [({"loss": "hinge"}, "loss must be one of"),
                                                 ({"loss": "focal", "focal_gamma": -1.0}, "focal_gamma")])
def test_bad_loss_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PCRClassifier(RecordingNet(), **kwargs)


def test_forward_passes_present_flags_and_covariates_to_the_net():
    net = RecordingNet()
    module = PCRClassifier(net)
    image = torch.randn(3, 4, 2, 2, 2)
    present = torch.tensor([[True, False, True, True]] * 3)
    covariates = torch.randn(3, 5)
    logits = module(image, present, covariates)
    assert logits.shape == (3,)
    called_image, called_present, called_covariates = net.calls[-1]
    assert called_image is image and called_present is present and called_covariates is covariates


def test_steps_read_present_flags_and_covariates_from_the_batch():
    net = RecordingNet()
    module = PCRClassifier(net)
    batch = {"image": torch.randn(2, 4, 2, 2, 2), "present": torch.ones(2, 4, dtype=torch.bool),
             "covariates": torch.randn(2, 3), "label": torch.tensor([0.0, 1.0]), "index": torch.tensor([7, 9])}
    out = module.predict_step(batch, 0)
    assert torch.equal(out["index"], batch["index"]) and out["prob_pcr"].shape == (2,)
    _, present, covariates = net.calls[-1]
    assert present is batch["present"] and covariates is batch["covariates"]
    # A batch without them (an older record layout) calls the net with None.
    module.predict_step({"image": batch["image"], "index": batch["index"]}, 0)
    assert net.calls[-1][1:] == (None, None)
