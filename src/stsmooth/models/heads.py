"""Projector and predictor MLPs of BYOL and MoCo v2.

Sizes from the papers that paper 000 §4.1 follows:
- BYOL (Grill et al. 2020, §3.3): projector and predictor are
  Linear(in, 4096) -> BN -> ReLU -> Linear(4096, 256).
- MoCo v2 (Chen et al. 2020): projector Linear(in, 2048) -> ReLU ->
  Linear(2048, 128), no BatchNorm; MoCo v2 has no predictor.

Every size can be overridden; the digits recipe uses small heads.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# kind -> (hidden_dim, out_dim, bn)
PROJECTOR_SIZES = {"byol": (4096, 256, True), "moco": (2048, 128, False)}
PREDICTOR_SIZES = {"byol": (4096, None, True)}  # out_dim None: same as the input (projector output)


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


def _lookup(table: dict, kind: str, what: str):
    if kind not in table:
        raise ValueError(f"unknown {what} kind {kind!r}; valid kinds: {sorted(table)}")
    return table[kind]


def projector(kind: str, in_dim: int, hidden_dim: int | None = None, out_dim: int | None = None,
              bn: bool | None = None) -> MLP:
    """The projection head g of BYOL or MoCo v2.

    Args:
        kind: ``"byol"`` (in -> 4096 -> 256, BN) or ``"moco"`` (in -> 2048 -> 128, no BN).
        in_dim: backbone feature size (``backbone.num_features``).
        hidden_dim, out_dim, bn: override the paper's values.

    Returns:
        An `MLP` mapping (B, in_dim) -> (B, out_dim).
    """
    h, o, b = _lookup(PROJECTOR_SIZES, kind, "projector")
    return MLP(in_dim, h if hidden_dim is None else hidden_dim, o if out_dim is None else out_dim,
               b if bn is None else bn)


def predictor(kind: str, dim: int, hidden_dim: int | None = None, out_dim: int | None = None,
              bn: bool | None = None) -> MLP:
    """The prediction head q of BYOL (dim -> 4096 -> dim, BN).

    Args:
        kind: ``"byol"``. MoCo v2 has no predictor, so ``"moco"`` is refused.
        dim: projector output size (256 in BYOL).
        hidden_dim, out_dim, bn: override the paper's values (out_dim defaults to dim).

    Returns:
        An `MLP` mapping (B, dim) -> (B, out_dim).
    """
    if kind == "moco":
        raise ValueError("predictor kind 'moco' is invalid: MoCo v2 has no predictor; valid kinds: ['byol']")
    h, o, b = _lookup(PREDICTOR_SIZES, kind, "predictor")
    o = dim if o is None else o
    return MLP(dim, h if hidden_dim is None else hidden_dim, o if out_dim is None else out_dim,
               b if bn is None else bn)
