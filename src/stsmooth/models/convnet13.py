"""Mean Teacher's 13-layer ConvNet for 32×32 images (SVHN, CIFAR-10).

Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017
(paper 004), §3 and appendix Table 5, the network shared by the Π model,
Temporal Ensembling and VAT:

    3×3 conv 128, ×3 (same)   -> 2×2 max-pool -> dropout 0.5
    3×3 conv 256, ×3 (same)   -> 2×2 max-pool -> dropout 0.5
    3×3 conv 512 (valid), 1×1 conv 256, 1×1 conv 128
    global average pool -> fully connected

every conv followed by BatchNorm and leaky ReLU (slope 0.1). With a 32×32
input the valid conv sees 8×8 and gives 6×6; inputs must be at least 12×12.

Differences from the paper, on purpose:
- The paper combines mean-only BatchNorm with weight normalisation
  (Salimans & Kingma 2016). Here BatchNorm is the standard affine one and
  weight normalisation is off by default; ``weight_norm=True`` adds it to every
  conv and the fc (parameter names then carry ``parametrizations.weight``).
- The input Gaussian noise (σ = 0.15) and translations are data
  augmentation, so they live in `stsmooth.augment` ("mean_teacher"), not here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from stsmooth.models.base import (
    Backbone,
    check_dropout,
    check_in_channels,
    make_classifier,
)

LEAKY_SLOPE = 0.1


class ConvNet13(Backbone):
    """The 13-layer ConvNet: 9 convs with BN + leaky ReLU, 2 max-pools, global pool, fc.

    Args:
        num_classes: size of ``fc``; 0 -> ``fc`` is ``nn.Identity`` and
            `forward` returns (B, 128) features.
        dropout: dropout after each of the two max-pools (paper: 0.5).
        in_channels: channels of the input images.
        weight_norm: apply weight normalisation to every conv and the fc.

    Attributes:
        num_features: 128.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, in_channels: int = 3,
                 weight_norm: bool = False):
        super().__init__()
        check_dropout(dropout)
        check_in_channels(in_channels)
        # (name, in, out, kernel, padding) in the paper's order.
        spec = [
            ("1a", in_channels, 128, 3, 1), ("1b", 128, 128, 3, 1), ("1c", 128, 128, 3, 1),
            ("2a", 128, 256, 3, 1), ("2b", 256, 256, 3, 1), ("2c", 256, 256, 3, 1),
            ("3a", 256, 512, 3, 0), ("3b", 512, 256, 1, 0), ("3c", 256, 128, 1, 0),
        ]
        for name, cin, cout, k, pad in spec:
            conv = nn.Conv2d(cin, cout, k, padding=pad, bias=False)  # BN supplies the bias
            setattr(self, f"conv{name}", _weight_norm(conv) if weight_norm else conv)
            setattr(self, f"bn{name}", nn.BatchNorm2d(cout))
        self._names = [s[0] for s in spec]
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        self.num_features = 128
        self.num_classes = num_classes
        fc = make_classifier(self.num_features, num_classes)
        self.fc = _weight_norm(fc) if weight_norm and num_classes > 0 else fc

    def _block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.act(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), H, W >= 12 -> (B, 128) globally average-pooled features."""
        for name in self._names[:3]:
            x = self._block(name, x)
        x = self.drop1(self.pool(x))
        for name in self._names[3:6]:
            x = self._block(name, x)
        x = self.drop2(self.pool(x))
        for name in self._names[6:]:
            x = self._block(name, x)
        return x.mean(dim=(2, 3))


def convnet13(num_classes: int = 0, dropout: float = 0.5, in_channels: int = 3,
              weight_norm: bool = False) -> ConvNet13:
    """Mean Teacher's 13-layer ConvNet (paper 004, Table 5); 3,121,802 parameters at 10 classes."""
    return ConvNet13(num_classes, dropout, in_channels, weight_norm)
