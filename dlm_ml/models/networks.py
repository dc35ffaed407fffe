"""Stacked-channel networks: every (timepoint, modality) image of a lesion is one input channel
of one CNN, [B, C, D, H, W] → one pCR logit per lesion [B].

Every factory takes ``in_channels`` (timepoint × modality channels) and
``patch_voxels`` (edge of the cubic patch in voxels) so configs can swap backbones. They read
the image only: a missing image is a channel of zeros, i.e. the normalisation centre (liver-like
tissue); the shared-encoder networks of :mod:`dlm_ml.models.longitudinal` read the present flags.
"""

from __future__ import annotations

import torch
from monai.networks import nets
from torch import nn


class _Squeeze(nn.Module):
    """[B, 1] logits → [B]; takes the network inputs every model is called with and reads the image."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, present: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(image).reshape(image.shape[0])


def small_cnn(in_channels: int, patch_voxels: int, channels=(16, 32, 64), strides=(2, 2, 2),
              num_res_units: int = 1, dropout: float = 0.2) -> nn.Module:
    """MONAI ``Classifier``: residual conv stages with stride-2 downsampling, then a linear
    layer. Small enough to train on a laptop CPU in minutes."""
    return _Squeeze(nets.Classifier(in_shape=(in_channels, patch_voxels, patch_voxels, patch_voxels), classes=1,
                                     channels=tuple(channels), strides=tuple(strides),
                                     num_res_units=num_res_units, dropout=dropout, norm="BATCH"))


def resnet(in_channels: int, patch_voxels: int, depth: int = 10, pretrained: bool = False) -> nn.Module:
    """MONAI 3-D ResNet (depth 10, 18, 34, 50). ``patch_voxels`` is unused: global pooling."""
    factory = {10: nets.resnet10, 18: nets.resnet18, 34: nets.resnet34, 50: nets.resnet50}
    if depth not in factory:
        raise ValueError(f"resnet depth must be one of {sorted(factory)}, got {depth}")
    if pretrained:
        raise ValueError("pretrained weights are not available offline; train from scratch")
    return _Squeeze(factory[depth](spatial_dims=3, n_input_channels=in_channels, num_classes=1))


#: Voxels per edge the standard DenseNet stem (7³ stride-2 convolution, stride-2 max-pool) and
#: its three stride-2 transitions need: 32-fold downsampling must leave at least one voxel.
DENSENET_MIN_VOXELS = 32
#: With the small-input stem (3³ stride-1 convolution, no pooling) only the transitions
#: downsample: 8-fold.
DENSENET_SMALL_STEM_MIN_VOXELS = 8


def densenet(in_channels: int, patch_voxels: int, variant: str = "121", dropout: float = 0.0,
             stem: str = "auto") -> nn.Module:
    """MONAI 3-D DenseNet (121, 169, 201, 264).

    ``stem`` chooses how the network first reduces resolution:

    - ``"imagenet"``: MONAI's stem, a 7³ stride-2 convolution and a stride-2 max-pool; with the
      three transitions the patch is downsampled 32-fold, so it needs >= 32 voxels per edge.
    - ``"small"``: a 3³ stride-1 convolution without pooling, as Huang et al. (CVPR 2017) did for
      the 32×32 CIFAR images; only the transitions downsample (8-fold), so patches of >= 8 voxels
      work. The dense blocks are unchanged. The default lesion patch (40 mm at 2 mm = 20 voxels)
      is far too small for the ImageNet stem: it would shrink the lesion to one voxel before the
      second dense block and to nothing after the third transition.
    - ``"auto"`` (default): ``"imagenet"`` when the patch has >= 32 voxels per edge, else ``"small"``.
    """
    factory = {"121": nets.DenseNet121, "169": nets.DenseNet169, "201": nets.DenseNet201, "264": nets.DenseNet264}
    if str(variant) not in factory:
        raise ValueError(f"densenet variant must be one of {sorted(factory)}, got {variant}")
    if stem not in ("auto", "imagenet", "small"):
        raise ValueError(f"densenet stem must be 'auto', 'imagenet' or 'small', got {stem!r}")
    if stem == "auto":
        stem = "imagenet" if patch_voxels >= DENSENET_MIN_VOXELS else "small"
    minimum = DENSENET_MIN_VOXELS if stem == "imagenet" else DENSENET_SMALL_STEM_MIN_VOXELS
    if patch_voxels < minimum:
        raise ValueError(f"densenet with the {stem} stem downsamples {minimum}-fold; patch_voxels must be >= "
                         f"{minimum}, got {patch_voxels} (raise data.patches.patch_size_mm or lower spacing_mm)")
    net = factory[str(variant)](spatial_dims=3, in_channels=in_channels, out_channels=1, dropout_prob=dropout)
    if stem == "small":
        init_features = net.features.conv0.out_channels
        conv = nn.Conv3d(in_channels, init_features, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight)  # as MONAI initialises its own convolutions
        net.features.conv0 = conv
        net.features.pool0 = nn.Identity()
    return _Squeeze(net)
