import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet
from stsmooth.evaluate.finetune import finetune


def quadrant_set(n, seed):
    """1x8x8 images whose class (0..3) is the bright quadrant."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    img = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for c in range(4):
        r, s = (c // 2) * 4, (c % 2) * 4
        img[labels == c, :, r : r + 4, s : s + 4] += 150
    return ImageSet(img, labels, ["tl", "tr", "bl", "br"])


class Tiny(nn.Module):
    num_features = 16

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16))

    def forward(self, x):
        return self.body(x)


def test_finetune_learns_and_leaves_backbone_alone():
    torch.manual_seed(0)
    backbone = Tiny()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    res = finetune(backbone, 4, quadrant_set(256, 0), quadrant_set(128, 1), epochs=8, lr=0.05, head_lr=0.1, batch_size=32)
    assert res["top1"] >= 90.0 and res["top5"] == 100.0
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_reproducible_and_rng_untouched():
    torch.manual_seed(0)
    backbone = Tiny()
    state = torch.get_rng_state()
    noisy = lambda b: b.float() / 255 + 0.1 * torch.randn(b.shape)  # noqa: E731 (uses the global RNG)
    kw = dict(epochs=1, batch_size=64, augment=noisy, seed=3)
    r1 = finetune(backbone, 4, quadrant_set(128, 0), quadrant_set(64, 1), **kw)
    r2 = finetune(backbone, 4, quadrant_set(128, 0), quadrant_set(64, 1), **kw)
    assert r1 == r2
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        finetune(Tiny(), 2, quadrant_set(16, 0), quadrant_set(16, 1), epochs=1)
    with pytest.raises(ValueError, match="ImageSet"):
        finetune(Tiny(), 4, torch.zeros(3), quadrant_set(16, 1), epochs=1)
