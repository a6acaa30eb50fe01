"""The small CNN for 8×8 digits."""

import pytest
import torch
from torch import nn

from stsmooth.models import build


def test_size_and_features():
    m = build("digits_cnn", num_classes=10)
    n = sum(p.numel() for p in m.parameters())
    assert n == 110_826 and 50_000 <= n <= 200_000
    assert m.num_features == 128
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 4


def test_shapes_grey_and_rgb():
    m = build("digits_cnn", num_classes=10).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)
        assert m.forward_features(torch.randn(2, 1, 8, 8)).shape == (2, 128)
    f = build("digits_cnn", in_channels=3).eval()
    with torch.no_grad():
        assert f(torch.randn(2, 3, 8, 8)).shape == (2, 128)
        assert f(torch.randn(2, 3, 32, 32)).shape == (2, 128)  # size-agnostic


def test_width_option_and_training_step():
    m = build("digits_cnn", num_classes=10, width=8)
    assert m.num_features == 32
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loss0 = nn.functional.cross_entropy(m(x), y)
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < loss0.item()
    assert m.bn1.num_batches_tracked.item() == 6


def test_fmnist_cnn_strided_stem():
    """fmnist_cnn = digits_cnn with a stride-2 first layer: 28 -> 14 -> 7 spatially."""
    m = build("fmnist_cnn", num_classes=10).eval()
    assert m.num_features == 64
    # conv 1->16 (144) + 16->32 (4608) + 32->64 (18432) + 64->64 1x1 (4096), BN 2x(16+32+64+64), fc 64*10+10
    assert sum(p.numel() for p in m.parameters()) == 144 + 4608 + 18432 + 4096 + 2 * 176 + 650
    shapes = []
    m.conv3.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert shapes == [(2, 64, 7, 7)]
    d = build("digits_cnn", num_classes=10).eval()  # one pool: 8 -> 4 at conv3
    d.conv3.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        d(torch.randn(2, 1, 8, 8))
    assert shapes[-1] == (2, 128, 4, 4)
    with pytest.raises(ValueError, match="stem_stride=3 is invalid; use 1"):
        from stsmooth.models.small import DigitsCNN

        DigitsCNN(stem_stride=3)
