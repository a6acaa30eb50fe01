"""The interface every backbone in `stsmooth.models` shares.

A backbone maps images (B, C, H, W) to pooled features (B, num_features) in
`forward_features`, and `forward` applies the classifier `fc` on top. With
``num_classes=0`` the classifier is ``nn.Identity`` so that `forward` returns
the features themselves, which is what the self-supervised methods (BYOL,
MoCo; paper 000 §4.1) put their projector on.
"""

from __future__ import annotations

import torch
from torch import nn


def check_num_classes(num_classes: int) -> int:
    """Validate a classifier size; 0 means "no classifier".

    Args:
        num_classes: number of output logits, or 0 for a feature extractor.

    Returns:
        ``num_classes`` as an int.

    Raises:
        ValueError: if it is not a non-negative integer.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes={num_classes!r} is invalid; use an integer >= 0 (0 = no classifier)")
    return num_classes


def check_in_channels(in_channels: int) -> int:
    """Validate the number of input image channels (e.g. 1 for digits, 3 for RGB)."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels={in_channels!r} is invalid; use an integer >= 1")
    return in_channels


def check_dropout(p: float, name: str = "dropout") -> float:
    """Validate a dropout probability in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}={p!r} is invalid; use a probability in [0, 1)")
    return float(p)


def make_classifier(num_features: int, num_classes: int) -> nn.Module:
    """``nn.Linear(num_features, num_classes)``, or ``nn.Identity`` when ``num_classes == 0``."""
    if check_num_classes(num_classes) == 0:
        return nn.Identity()
    return nn.Linear(num_features, num_classes)


class Backbone(nn.Module):
    """Base class: pooled features, then an optional linear classifier ``fc``.

    Subclasses set ``self.num_features``, ``self.fc`` and implement
    `forward_features`.

    Attributes:
        num_features: dimension D of the pooled features (input size of ``fc``).
        num_classes: number of logits, 0 when ``fc`` is ``nn.Identity``.
    """

    num_features: int
    num_classes: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features.

        Unlike timm's ``forward_features`` this returns the globally pooled
        vector, not the last feature map, so every backbone here has the same
        output shape.

        Args:
            x: images, (B, C, H, W) float.

        Returns:
            (B, num_features) features.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes), or features (B, num_features) when num_classes == 0."""
        return self.fc(self.forward_features(x))
