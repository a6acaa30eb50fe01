"""ResNet-18/50: torchvision's names and counts, stems, shapes (paper 000 §4.1)."""

import pytest
import torch
from torch import nn

from stsmooth.models import build
from stsmooth.models.resnet import BasicBlock, Bottleneck

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(blocks, convs_per_block):
    """torchvision.models.resnetXX().state_dict() keys in order, written out from its layout."""
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in BN]
    for stage, n in enumerate(blocks, 1):
        for b in range(n):
            p = f"layer{stage}.{b}."
            for j in range(1, convs_per_block + 1):
                keys += [f"{p}conv{j}.weight"] + [f"{p}bn{j}.{s}" for s in BN]
            # torchvision projects the shortcut in the first block of every stage,
            # except ResNet-18's layer1 (64 -> 64 channels, stride 1).
            if b == 0 and not (convs_per_block == 2 and stage == 1):
                keys += [f"{p}downsample.0.weight"] + [f"{p}downsample.1.{s}" for s in BN]
    return keys + ["fc.weight", "fc.bias"]


# A representative subset of torchvision resnet50's state_dict, with shapes.
RESNET50_SHAPES = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.weight": (64,),
    "bn1.running_mean": (64,),
    "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.bn3.weight": (256,),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.running_var": (256,),
    "layer1.2.conv1.weight": (64, 256, 1, 1),
    "layer2.0.conv1.weight": (128, 256, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "layer2.3.bn3.bias": (512,),
    "layer3.0.downsample.0.weight": (1024, 512, 1, 1),
    "layer3.5.conv3.weight": (1024, 256, 1, 1),
    "layer4.0.conv2.weight": (512, 512, 3, 3),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.bn3.num_batches_tracked": (),
    "fc.weight": (1000, 2048),
    "fc.bias": (1000,),
}


@pytest.fixture(scope="module")
def r50():
    return build("resnet50", num_classes=1000)


def test_resnet50_parameter_count_and_names(r50):
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032
    assert len(list(r50.parameters())) == 161  # 53 convs + 53 BN × 2 + fc × 2
    sd = r50.state_dict()
    assert len(sd) == 320  # 161 parameters + 53 BN × 3 buffers
    assert list(sd) == torchvision_keys((3, 4, 6, 3), 3)
    for key, shape in RESNET50_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key
    assert "layer1.1.downsample.0.weight" not in sd


def test_resnet18_parameter_count_and_names():
    m = build("resnet18", num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == 11_689_512
    sd = m.state_dict()
    assert len(sd) == 122  # 62 parameters + 20 BN × 3 buffers
    assert list(sd) == torchvision_keys((2, 2, 2, 2), 2)
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["fc.weight"].shape) == (1000, 512)


def test_imagenet_stem_shapes(r50):
    r50.eval()
    seen = {}
    r50.layer4.register_forward_hook(lambda mod, i, o: seen.update(maps=o.shape))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert r50(x).shape == (2, 1000)
    assert seen["maps"] == (2, 2048, 2, 2)  # stride 32: 7×7/2 conv and max-pool
    assert isinstance(r50.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_cifar_stem(name, dim):
    m = build(name, stem="cifar", num_classes=10).eval()
    assert isinstance(m.maxpool, nn.Identity)
    assert tuple(m.conv1.weight.shape) == (64, 3, 3, 3) and m.conv1.stride == (1, 1)
    ref = build(name, num_classes=10)
    # same names and shapes except conv1
    a, b = m.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert [k for k in a if a[k].shape != b[k].shape] == ["conv1.weight"]
    seen = {}
    m.layer4.register_forward_hook(lambda mod, i, o: seen.update(maps=o.shape))
    with torch.no_grad():
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert seen["maps"] == (2, dim, 4, 4)  # stride 8: no 7×7/2, no max-pool
    assert m.num_features == dim


def test_num_classes_zero_returns_features():
    m = build("resnet18", stem="cifar").eval()  # num_classes defaults to 0
    assert isinstance(m.fc, nn.Identity) and m.num_classes == 0
    assert not any(k.startswith("fc.") for k in m.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        f = m(x)
        assert m.forward_maps(x).shape == (2, 512, 2, 2)
        assert f.shape == (2, 512)
        torch.testing.assert_close(f, m.forward_features(x))
        # features are post-ReLU averages
        assert (f >= 0).all()


def test_logits_are_fc_of_features():
    m = build("resnet18", stem="cifar", num_classes=7).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.fc(m.forward_features(x)))


def test_in_channels():
    m = build("resnet18", stem="cifar", in_channels=1).eval()
    assert tuple(m.conv1.weight.shape) == (64, 1, 3, 3)
    with torch.no_grad():
        assert m(torch.randn(2, 1, 16, 16)).shape == (2, 512)


def test_init_and_zero_init_residual(r50):
    m = build("resnet18")
    assert all(torch.all(b.bn2.weight == 1) for b in m.modules() if isinstance(b, BasicBlock))
    m = build("resnet18", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for b in m.modules() if isinstance(b, BasicBlock))
    assert torch.all(m.bn1.weight == 1)
    m = build("resnet50", zero_init_residual=True)
    blocks = [b for b in m.modules() if isinstance(b, Bottleneck)]
    assert len(blocks) == 16 and all(torch.all(b.bn3.weight == 0) for b in blocks)
    # kaiming fan_out: std of conv1 weights ≈ sqrt(2 / (64·7·7))
    assert abs(r50.conv1.weight.std().item() - (2 / (64 * 49)) ** 0.5) < 0.003


@pytest.mark.parametrize("kwargs,match", [
    (dict(stem="tiny"), "stem='tiny'"),
    (dict(num_classes=-1), "num_classes=-1"),
    (dict(in_channels=0), "in_channels=0"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build("resnet18", **kwargs)
