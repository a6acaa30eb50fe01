import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet
from stsmooth.evaluate.linear import (
    linear_probe,
    linear_probe_backbone,
    lr_schedule,
    train_linear,
)


def test_separable_features_are_classified(clusters):
    x, y = clusters(60, 6, 8, seed=0)
    xt, yt = clusters(30, 6, 8, seed=1)
    res = linear_probe(x, y, xt, yt, epochs=15, lr=0.1, batch_size=32)
    assert res["top1"] >= 98.0 and res["top5"] == 100.0


def test_shuffled_labels_stay_near_chance(clusters):
    x, y = clusters(60, 6, 8, seed=0)
    xt, yt = clusters(30, 6, 8, seed=1)
    y_rand = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert linear_probe(x, y_rand, xt, yt, epochs=15, lr=0.1, batch_size=32)["top1"] < 50.0


def test_deterministic_from_seed(clusters):
    x, y = clusters(20, 3, 4, seed=0)
    h1 = train_linear(x, y, 3, epochs=3, lr=0.1, batch_size=16, seed=5)
    h2 = train_linear(x, y, 3, epochs=3, lr=0.1, batch_size=16, seed=5)
    assert torch.equal(h1.weight, h2.weight)


def test_lr_schedules():
    cosine, step = lr_schedule(0.2, 100), lr_schedule(30.0, 100, "step")
    assert cosine(0) == pytest.approx(0.2)
    assert cosine(50) == pytest.approx(0.1)
    assert cosine(100) == pytest.approx(0.0)
    assert step(59) == pytest.approx(30.0)
    assert step(60) == pytest.approx(3.0)
    assert step(80) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(0.1, 10, "linear")


class Flatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(16)

    def forward(self, x):
        return self.bn(x.flatten(1))


def test_backbone_probe_keeps_bn_frozen(clusters):
    x, y = clusters(30, 4, 16, seed=0)
    images = ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8).view(-1, 1, 4, 4)
    data = ImageSet(images, y, [str(c) for c in range(4)])
    backbone = Flatten().train()
    before = backbone.bn.running_mean.clone()
    res = linear_probe_backbone(backbone, data, data, epochs=10, lr=0.1, batch_size=32)
    assert res["top1"] >= 95.0
    assert torch.equal(backbone.bn.running_mean, before)  # eval mode: statistics not updated
    assert backbone.training and backbone.bn.training  # mode restored


def test_bad_input(clusters):
    x, y = clusters(5, 2, 4, seed=0)
    with pytest.raises(ValueError, match="dimension"):
        linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="epochs"):
        linear_probe(x, y, x, y, epochs=0)
    with pytest.raises(ValueError, match="num_classes"):
        linear_probe(x, y, x, y, num_classes=1)
