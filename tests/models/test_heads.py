"""The MLP of the BYOL / MoCo heads (their paper sizes are tested with the methods)."""

import pytest
import torch
from torch import nn

from stsmooth.models.heads import MLP


def test_mlp_layout():
    m = MLP(16, 32, 8)
    assert [n for n, _ in m.named_children()] == ["fc1", "bn", "relu", "fc2"]
    assert isinstance(m.bn, nn.BatchNorm1d) and m.bn.num_features == 32
    assert m(torch.randn(4, 16)).shape == (4, 8)
    assert sum(p.numel() for p in m.parameters()) == (16 * 32 + 32) + 2 * 32 + (32 * 8 + 8)
    assert isinstance(MLP(16, 32, 8, bn=False).bn, nn.Identity)


@pytest.mark.parametrize("call,match", [
    (lambda: MLP(0, 4, 4), "in_dim=0"),
    (lambda: MLP(8, -2, 4), "hidden_dim=-2"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
