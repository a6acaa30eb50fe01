import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet
from stsmooth.evaluate.features import extract_features


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def images(n=10):
    return torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_matches_eval_forward_and_restores_mode():
    net = small_net().train()
    net[1].eval()  # a deliberately frozen BN inside a training model must stay frozen
    x = images()
    net[1].running_mean.fill_(0.3)
    feats = extract_features(net, x, batch_size=3)
    assert net.training and not net[1].training and net[3].training
    assert torch.equal(net[1].running_mean, torch.full((4,), 0.3))  # not updated
    net.eval()
    with torch.no_grad():
        expected = net(x.float() / 255)
    assert feats.shape == (10, 4) and not feats.requires_grad
    assert torch.allclose(feats, expected, atol=1e-6)


def test_loader_imageset_and_transform():
    net, x = small_net(), images()
    y = torch.arange(10) % 3
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    f1, l1 = extract_features(net, loader, return_labels=True)
    f2, l2 = extract_features(net, ImageSet(x, y, ["a", "b", "c"]), batch_size=4, return_labels=True)
    assert torch.allclose(f1, f2) and torch.equal(l1, y) and torch.equal(l2, y)
    f3 = extract_features(net, x, transform=lambda b: b.float() / 255 * 0)
    assert torch.allclose(f3, f3[:1].expand_as(f3))  # zero input everywhere


def test_bad_input():
    net = small_net()
    with pytest.raises(ValueError, match="return_labels"):
        extract_features(net, images(), return_labels=True)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(net, images(), batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        extract_features(net, [])
