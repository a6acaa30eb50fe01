"""Backbone + projector, the network a self-supervised teacher is a smoothed copy of.

BYOL's online/target encoder and MoCo's query/key encoder are both this module
(paper 000 §4.1); the method files add their predictor, queue and loss.
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.data.imageset import to_float


class Encoder(nn.Module):
    """Backbone + projector: the student of BYOL and MoCo, and so the teacher's shape.

    Attributes:
        normalize: dataset mean/std normalisation of [0, 1] images.
        backbone: (B, C, H, W) -> (B, num_features); kNN features come from here.
        projector: (B, num_features) -> (B, projector_out).
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, normalize: nn.Module | None = None):
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.backbone = backbone
        self.projector = projector

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 or [0, 1] floats -> (B, num_features) backbone features."""
        return self.backbone(self.normalize(to_float(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 or [0, 1] floats -> (B, projector_out) projections."""
        return self.projector(self.features(x))
