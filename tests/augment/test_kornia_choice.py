"""The non-timing facts behind keeping our views instead of ``kornia.augmentation``.

``stsmooth/augment/__init__.py`` records why the BYOL/MoCo v2 views are ours
(measured with ``benchmarks/augment_throughput.py``). Part of that reason is
behaviour, checked here against the installed kornia, so that a kornia release
that changes it makes this file fail and the choice gets revisited.
"""

import kornia.augmentation as K
import pytest
import torch

from stsmooth import augment


def test_kornia_colour_jiggle_refuses_one_channel_but_our_views_run_digits():
    gray = torch.rand(4, 1, 8, 8)
    with pytest.raises(Exception, match="3"):
        K.ColorJiggle(0.4, 0.4, 0.2, 0.1, p=1.0)(gray)
    torch.manual_seed(0)
    y = augment.build("byol1", 8, flip=False, blur=False, crop_scale=(1.0, 1.0), ratio=(1.0, 1.0))(gray)
    assert y.shape == gray.shape and not torch.equal(y, gray)  # brightness/contrast still jitter


def test_kornia_colour_jiggle_draws_one_order_per_batch():
    # torchvision (and ours) draw the order of the four adjustments per image
    params = K.ColorJiggle(0.4, 0.4, 0.2, 0.1, p=1.0).forward_parameters(torch.Size([8, 3, 4, 4]))
    assert params["brightness_factor"].shape == (8,) and params["order"].shape == (4,)


def test_kornia_view_would_be_reproducible_under_our_seeding():
    # our seeding is torch.manual_seed of the global generators; kornia draws from the global CPU one
    view = torch.nn.Sequential(
        K.RandomResizedCrop((16, 16), align_corners=False),
        K.RandomHorizontalFlip(),
        K.ColorJiggle(0.4, 0.4, 0.2, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5),
        K.RandomSolarize(0.0, 0.0, p=0.2),
    )
    x = torch.rand(16, 3, 16, 16)
    torch.manual_seed(5)
    a = view(x)
    torch.manual_seed(5)
    b = view(x)
    torch.manual_seed(6)
    c = view(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
