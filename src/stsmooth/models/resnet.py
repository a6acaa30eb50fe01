"""ResNet-18 and ResNet-50 with torchvision's module tree.

Written from scratch (He et al., "Deep Residual Learning", CVPR 2016; the
"v1.5" variant with the stride on the 3×3 conv of the bottleneck, as
torchvision has it). Parameter and buffer names, shapes and counts are those
of ``torchvision.models.resnet18/resnet50`` (resnet50 with a 1000-way fc:
25,557,032 parameters; resnet18: 11,689,512), so an exported state dict loads
into torchvision and detection codebases unchanged. Used as the backbone of
BYOL/MoCo in paper 000 §4.1 and EMAN (003) §5.

The CIFAR stem (3×3/1 conv, no max-pool) keeps the names: ``conv1`` only
changes shape and ``maxpool`` becomes a parameter-free ``nn.Identity``.
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.models.base import Backbone, check_in_channels, make_classifier

STEMS = ("imagenet", "cifar")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with an identity (or 1×1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand by 4; ResNet-50/101/152."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, 4·planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """ResNet with torchvision's parameter names.

    Args:
        block: `BasicBlock` or `Bottleneck`.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        num_classes: size of ``fc``; 0 makes ``fc`` an ``nn.Identity`` and
            `forward` return (B, num_features) features.
        stem: ``"imagenet"`` (7×7/2 conv + 3×3/2 max-pool) or ``"cifar"``
            (3×3/1 conv, no max-pool) for 32×32 inputs.
        in_channels: channels of the input images.
        zero_init_residual: zero the last BN gamma of every residual branch so
            each block starts as the identity (Goyal et al. 2017); off by
            default, as in torchvision.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        stem: str = "imagenet",
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r} is invalid; use one of {list(STEMS)}")
        check_in_channels(in_channels)
        self.stem = stem
        self.inplanes = 64
        imagenet = stem == "imagenet"
        # Registration order follows torchvision so named_modules() lines up too.
        self.conv1 = (nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False) if imagenet
                      else nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False))
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512 * block.expansion
        self.num_classes = num_classes
        self.fc = make_classifier(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's scheme, so training from scratch matches its recipes.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map before pooling: (B, C, H, W) -> (B, num_features, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features) globally average-pooled features."""
        return torch.flatten(self.avgpool(self.forward_maps(x)), 1)


def resnet18(num_classes: int = 0, stem: str = "imagenet", in_channels: int = 3,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-18 (num_features 512); 11,689,512 parameters with a 1000-way fc."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, stem, in_channels, zero_init_residual)


def resnet50(num_classes: int = 0, stem: str = "imagenet", in_channels: int = 3,
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 (num_features 2048); 25,557,032 parameters with a 1000-way fc."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, stem, in_channels, zero_init_residual)
