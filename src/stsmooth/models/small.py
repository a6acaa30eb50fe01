"""Small CNNs for scikit-learn's 8×8 digits and for 28×28 (Fashion-)MNIST.

Not from a paper: it stands in for the ResNet/WRN backbones of paper 000 §4.1
when the whole pipeline (BYOL, MoCo, FixMatch, Mean Teacher with any teacher
smoothing) has to run in seconds on a CPU. It keeps what matters for teacher
smoothing: several conv layers with BatchNorm (so EMAN's statistics rules
apply, paper 003) and a pooled feature vector for projector heads and kNN.

    conv3×3 32  -> BN -> ReLU                 8×8
    conv3×3 64  -> BN -> ReLU -> max-pool 2   4×4
    conv3×3 128 -> BN -> ReLU                 4×4
    conv1×1 128 -> BN -> ReLU                 4×4
    global average pool -> fc

About 111k parameters with 10 classes and one input channel. Global pooling
makes it size-agnostic, so 3×8×8 or larger inputs work too.

``fmnist_cnn`` is the same network with a stride-2 first layer
(``stem_stride=2``), so a 28×28 image is 14×14 from the first layer on and
7×7 after the max-pool; at its default width 16 a forward pass costs about
2.0M multiply-adds per image (digits_cnn at width 32 would cost ~30M on 28×28).
A max-pool after a full-resolution first layer instead was 1.5-2× slower per
training step on 2 shared CPU cores (torch 2.13), the 28×28 BatchNorm, ReLU and
pool being memory-bound.
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.models.base import Backbone, check_in_channels, make_classifier


class DigitsCNN(Backbone):
    """Four conv-BN-ReLU layers and one max-pool, for 8×8 images.

    Args:
        num_classes: size of ``fc``; 0 -> ``fc`` is ``nn.Identity`` and
            `forward` returns (B, 128) features.
        in_channels: 1 for the grey digits, 3 for RGB variants.
        width: channels of the first layer; the others are 2×, 4×, 4× it.
        stem_stride: stride of the first convolution: 1 for 8×8 inputs, 2 for 28×28.

    Attributes:
        num_features: 4 × width (128 by default).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, stem_stride: int = 1):
        super().__init__()
        check_in_channels(in_channels)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} is invalid; use an integer >= 1")
        if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
            raise ValueError(f"stem_stride={stem_stride!r} is invalid; use 1 (8×8 inputs) or 2 (28×28 inputs)")
        c1, c2, c3 = width, 2 * width, 4 * width
        self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c3)
        self.conv4 = nn.Conv2d(c3, c3, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(c3)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.num_features = c3
        self.num_classes = num_classes
        self.fc = make_classifier(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W), H, W >= 2 (>= 3 with stem_stride=2) -> (B, num_features) pooled features."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.relu(self.bn4(self.conv4(x)))
        return x.mean(dim=(2, 3))


def digits_cnn(num_classes: int = 0, in_channels: int = 1, width: int = 32) -> DigitsCNN:
    """Small CNN for 1×8×8 digits (num_features 128 at width 32)."""
    return DigitsCNN(num_classes, in_channels, width)


def fmnist_cnn(num_classes: int = 0, in_channels: int = 1, width: int = 16) -> DigitsCNN:
    """Small CNN for 1×28×28 (Fashion-)MNIST: digits_cnn with a stride-2 first layer (num_features 64 at width 16)."""
    return DigitsCNN(num_classes, in_channels, width, stem_stride=2)
