"""The small CNN for 8×8 digits."""

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
