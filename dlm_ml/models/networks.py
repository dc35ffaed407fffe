"""Networks mapping a lesion patch [B, C, D, H, W] to one pCR logit per lesion [B].

Every factory takes ``in_channels`` (timepoint × modality channels) and
``patch_voxels`` (edge of the cubic patch in voxels) so configs can swap backbones.
"""

from __future__ import annotations

import torch
from monai.networks import nets
from torch import nn


class _Squeeze(nn.Module):
    """[B, 1] logits → [B]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


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


def densenet(in_channels: int, patch_voxels: int, variant: str = "121", dropout: float = 0.0) -> nn.Module:
    """MONAI 3-D DenseNet (121, 169, 201, 264)."""
    factory = {"121": nets.DenseNet121, "169": nets.DenseNet169, "201": nets.DenseNet201, "264": nets.DenseNet264}
    if patch_voxels < 32:
        raise ValueError(f"densenet downsamples 32-fold; patch_voxels must be >= 32, got {patch_voxels} "
                         "(raise data.patches.patch_size_mm or lower spacing_mm)")
    if str(variant) not in factory:
        raise ValueError(f"densenet variant must be one of {sorted(factory)}, got {variant}")
    return _Squeeze(factory[str(variant)](spatial_dims=3, in_channels=in_channels, out_channels=1,
                                          dropout_prob=dropout))
