"""Wide ResNet-28-k as FixMatch uses it (WRN-28-2 for CIFAR-10, WRN-28-8 for CIFAR-100).

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, in the form of
FixMatch's reference code (Sohn et al. 2020), which paper 000 §4.1 follows:
pre-activation blocks, leaky ReLU with slope 0.1, BatchNorm momentum 0.001
(TensorFlow's decay 0.999), convolutions without bias, He-normal (fan-out)
conv init, Glorot-normal classifier. WRN-28-2 with 10 classes has 1,467,610
parameters, the number quoted for FixMatch.

Block semantics follow FixMatch's TensorFlow ``residual``: the main path is
always pre-activated (BN, leaky ReLU); the shortcut takes the raw input except
in the very first block, where it takes the activated input
(``activate_before_residual``).
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.models.base import (
    Backbone,
    check_dropout,
    check_in_channels,
    make_classifier,
)

BN_MOMENTUM = 0.001  # FixMatch's decay 0.999 in PyTorch's convention
LEAKY_SLOPE = 0.1


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-lReLU-conv3×3(stride)-BN-lReLU-[dropout]-conv3×3, plus shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0,
                 activate_before_residual: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.activate_before_residual = activate_before_residual
        needs_projection = in_planes != out_planes or stride != 1
        self.shortcut = (nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
                         if needs_projection else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_planes, H, W) -> (B, out_planes, H/stride, W/stride)."""
        out = self.act(self.bn1(x))  # BN returns a new tensor, so x survives for the shortcut
        residual = out if self.activate_before_residual else x
        out = self.conv1(out)
        out = self.dropout(self.act(self.bn2(out)))
        out = self.conv2(out)
        if self.shortcut is not None:
            residual = self.shortcut(residual)
        return residual + out


class WideResNet(Backbone):
    """WRN-depth-k for 32×32 images (three stages at 32, 16, 8 pixels).

    Args:
        depth: total depth, 6n + 4 (28 -> 4 blocks per stage).
        widen_factor: k; stage widths are 16k, 32k, 64k.
        num_classes: size of ``fc``; 0 -> ``fc`` is ``nn.Identity`` and
            `forward` returns (B, num_features) features.
        dropout: dropout between the two convs of every block (FixMatch: 0).
        in_channels: channels of the input images.

    Attributes:
        num_features: 64k (128 for WRN-28-2, 512 for WRN-28-8).
    """

    def __init__(self, depth: int = 28, widen_factor: int = 2, num_classes: int = 10,
                 dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth={depth!r} is invalid; use 6n+4 with n >= 1 (e.g. 28)")
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor={widen_factor!r} is invalid; use an integer >= 1")
        check_dropout(dropout)
        check_in_channels(in_channels)
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._stage(widths[0], widths[1], n, 1, dropout, activate_before_residual=True)
        self.block2 = self._stage(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._stage(widths[2], widths[3], n, 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3], momentum=BN_MOMENTUM)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.num_features = widths[3]
        self.num_classes = num_classes
        self.fc = make_classifier(self.num_features, num_classes)
        self._init_weights()

    @staticmethod
    def _stage(in_planes: int, out_planes: int, n: int, stride: int, dropout: float,
               activate_before_residual: bool = False) -> nn.Sequential:
        blocks = [WideBasicBlock(in_planes, out_planes, stride, dropout, activate_before_residual)]
        blocks += [WideBasicBlock(out_planes, out_planes, 1, dropout) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features) globally average-pooled features."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.act(self.bn1(x))
        return x.mean(dim=(2, 3))


def wrn28_2(num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    """WRN-28-2 (num_features 128), FixMatch's CIFAR-10 network; 1,467,610 parameters at 10 classes."""
    return WideResNet(28, 2, num_classes, dropout, in_channels)


def wrn28_8(num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    """WRN-28-8 (num_features 512), FixMatch's CIFAR-100 network."""
    return WideResNet(28, 8, num_classes, dropout, in_channels)
