"""The MLP of the projector and predictor heads of BYOL and MoCo v2.

Linear -> [BN] -> ReLU -> Linear, the shape both papers use (paper 000 §4.1
follows them). Their sizes are the methods' hyper-parameters and live in the
method files' ``Config`` (:mod:`stsmooth.methods.byol`: 4096 -> 256 with BN,
predictor 4096 -> 256; :mod:`stsmooth.methods.moco`: 2048 -> 128, no BN).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _check_dim(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; use an integer >= 1")
    return value


class MLP(nn.Sequential):
    """Linear -> [BN] -> ReLU -> Linear.

    Submodules are named ``fc1``, ``bn`` (``nn.Identity`` when ``bn=False``),
    ``relu``, ``fc2``.

    Args:
        in_dim: input features D_in.
        hidden_dim: hidden width.
        out_dim: output features D_out.
        bn: BatchNorm1d on the hidden layer (BYOL) or not (MoCo v2).

    Shape:
        (B, in_dim) -> (B, out_dim). With ``bn=True`` training needs B >= 2.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, bn: bool = True):
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            _check_dim(name, value)
        super().__init__(OrderedDict([
            ("fc1", nn.Linear(in_dim, hidden_dim)),
            ("bn", nn.BatchNorm1d(hidden_dim) if bn else nn.Identity()),
            ("relu", nn.ReLU(inplace=True)),
            ("fc2", nn.Linear(hidden_dim, out_dim)),
        ]))
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        return super().forward(x)
