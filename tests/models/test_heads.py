"""Projector/predictor sizes of BYOL and MoCo v2."""

import pytest
import torch
from torch import nn

from stsmooth.models.heads import MLP, predictor, projector


def test_mlp_layout():
    m = MLP(16, 32, 8)
    assert [n for n, _ in m.named_children()] == ["fc1", "bn", "relu", "fc2"]
    assert isinstance(m.bn, nn.BatchNorm1d) and m.bn.num_features == 32
    assert m(torch.randn(4, 16)).shape == (4, 8)
    assert sum(p.numel() for p in m.parameters()) == (16 * 32 + 32) + 2 * 32 + (32 * 8 + 8)
    assert isinstance(MLP(16, 32, 8, bn=False).bn, nn.Identity)


def test_byol_sizes():
    p = projector("byol", 2048)
    assert (p.fc1.in_features, p.fc1.out_features, p.fc2.out_features) == (2048, 4096, 256)
    assert isinstance(p.bn, nn.BatchNorm1d)
    q = predictor("byol", 256)
    assert (q.fc1.in_features, q.fc1.out_features, q.fc2.out_features) == (256, 4096, 256)
    assert isinstance(q.bn, nn.BatchNorm1d)
    # ResNet-50 BYOL projector: 2048·4096+4096 + 2·4096 + 4096·256+256
    assert sum(x.numel() for x in p.parameters()) == 9_449_728


def test_moco_sizes():
    p = projector("moco", 2048)
    assert (p.fc1.in_features, p.fc1.out_features, p.fc2.out_features) == (2048, 2048, 128)
    assert isinstance(p.bn, nn.Identity)
    with pytest.raises(ValueError, match="no predictor"):
        predictor("moco", 128)


def test_overrides():
    p = projector("byol", 128, hidden_dim=64, out_dim=32)
    assert (p.fc1.out_features, p.fc2.out_features) == (64, 32)
    q = predictor("byol", 32, hidden_dim=16)
    assert (q.fc1.in_features, q.fc1.out_features, q.fc2.out_features) == (32, 16, 32)
    assert isinstance(projector("moco", 8, bn=True).bn, nn.BatchNorm1d)
    assert q(p(torch.randn(3, 128))).shape == (3, 32)


@pytest.mark.parametrize("call,match", [
    (lambda: projector("simclr", 8), "unknown projector kind 'simclr'"),
    (lambda: predictor("swav", 8), "unknown predictor kind 'swav'"),
    (lambda: MLP(0, 4, 4), "in_dim=0"),
    (lambda: projector("byol", 8, hidden_dim=-2), "hidden_dim=-2"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
