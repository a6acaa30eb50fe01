"""FixMatch's WRN-28-2 / WRN-28-8 (paper 000 §4.1)."""

import pytest
import torch
from torch import nn

from stsmooth.models import build
from stsmooth.models.wide_resnet import WideResNet


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    # 1,467,610 is the size FixMatch reports for WRN-28-2 on CIFAR-10; the
    # WRN-28-8 figure follows from the same layout (widths 16, 128, 256, 512).
    assert count(build("wrn28_2", num_classes=10)) == 1_467_610
    assert count(build("wrn28_8", num_classes=100)) == 23_401_012


def test_fixmatch_details():
    m = build("wrn28_2", num_classes=10)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert len(bns) == 25 and all(abs(b.momentum - 0.001) < 1e-12 for b in bns)
    acts = [x for x in m.modules() if isinstance(x, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.1 for a in acts)
    assert [len(s) for s in (m.block1, m.block2, m.block3)] == [4, 4, 4]
    assert m.block1[0].activate_before_residual and not m.block2[0].activate_before_residual
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))


@pytest.mark.parametrize("name,dim", [("wrn28_2", 128), ("wrn28_8", 512)])
def test_shapes(name, dim):
    m = build(name, num_classes=10).eval()
    assert m.num_features == dim
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (2, 10)
        assert m.forward_features(x).shape == (2, dim)


def test_features_without_classifier_and_dropout():
    m = build("wrn28_2", dropout=0.3)
    assert isinstance(m.fc, nn.Identity)
    drops = [x for x in m.modules() if isinstance(x, nn.Dropout)]
    assert len(drops) == 12 and all(d.p == 0.3 for d in drops)
    m.train()
    x = torch.randn(2, 3, 16, 16)
    assert m(x).shape == (2, 128)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x))


def test_backward_runs():
    m = build("wrn28_2", num_classes=10)
    m(torch.randn(2, 3, 8, 8)).sum().backward()
    assert m.conv1.weight.grad is not None and m.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=27), "depth=27"), (dict(widen_factor=0), "widen_factor=0"), (dict(dropout=1.0), "dropout=1.0"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WideResNet(**kwargs)
