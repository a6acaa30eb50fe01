"""Mean Teacher's 13-layer ConvNet (paper 004, appendix Table 5)."""

import pytest
import torch
from torch import nn

from stsmooth.models import build


def test_layout_and_count():
    m = build("convnet13", num_classes=10)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128] * 3 + [256] * 3 + [512, 256, 128]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1]
    assert convs[6].padding == (0, 0)  # the 512 conv is "valid"
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 9
    assert m.act.negative_slope == 0.1
    assert m.drop1.p == 0.5 and m.drop2.p == 0.5
    # 9 convs (bias-free) + 9 BN + fc, computed by hand
    assert sum(p.numel() for p in m.parameters()) == 3_121_802


def test_shapes_and_valid_conv():
    m = build("convnet13", num_classes=10).eval()
    seen = {}
    m.conv3a.register_forward_hook(lambda mod, i, o: seen.update({"3a": o.shape}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (2, 10)
        assert m.forward_features(x).shape == (2, 128)
    assert seen["3a"] == (2, 512, 6, 6)  # 32 -> 16 -> 8 -> valid 3×3 -> 6
    f = build("convnet13").eval()
    with torch.no_grad():
        assert f(x).shape == (2, 128)


def test_dropout_and_weight_norm_options():
    m = build("convnet13", num_classes=10, dropout=0.0, weight_norm=True)
    assert m.drop1.p == 0.0
    names = [k for k, _ in m.named_parameters()]
    assert "conv1a.parametrizations.weight.original0" in names
    assert "fc.parametrizations.weight.original1" in names
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_bad_dropout():
    with pytest.raises(ValueError, match="dropout"):
        build("convnet13", dropout=-0.1)
