"""MEAN_STD table, normalize() and Normalize."""

import pytest
import torch

from stsmooth.augment.normalize import MEAN_STD, Normalize, mean_std, normalize


def test_table_has_the_contract_datasets():
    assert {"cifar10", "cifar100", "svhn", "stl10", "imagenet", "mnist", "digits"} <= set(MEAN_STD)
    for mean, std in MEAN_STD.values():
        assert len(mean) == len(std) in (1, 3) and all(0 < v < 1 for v in mean + std)


def test_normalize_and_module_agree():
    x = torch.rand(4, 3, 8, 8)
    mean, std = mean_std("cifar10")
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x, mean, std), expected)
    torch.testing.assert_close(Normalize("cifar10")(x), expected)
    torch.testing.assert_close(Normalize(mean, std)(x), expected)


def test_uint8_input_and_single_value_broadcast():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    torch.testing.assert_close(Normalize("digits")(x), torch.full((2, 3, 4, 4), (1 - 0.3053) / 0.3759))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Normalize("imagenet21k"), "imagenet21k"),
        (lambda: Normalize("cifar10")(torch.rand(2, 1, 4, 4)), "channel"),
        (lambda: normalize(torch.rand(2, 3, 4, 4), 0.5, 0.0), "std"),
        (lambda: Normalize((0.5,), (-1.0,)), "std"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
