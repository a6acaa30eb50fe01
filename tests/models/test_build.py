"""stsmooth.models.build / names."""

import pytest
import torch

from stsmooth import models

NAMES = ["convnet13", "digits_cnn", "fmnist_cnn", "resnet18", "resnet50", "wrn28_2", "wrn28_8"]


def test_names():
    assert models.names() == NAMES


def test_build_every_name_has_features():
    for name in ["digits_cnn", "convnet13", "wrn28_2", "resnet18"]:
        m = models.build(name)
        assert isinstance(m.num_features, int)
        assert hasattr(m, "forward_features")
    m = models.build("digits_cnn", num_classes=3).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        models.build("resnet101")
    assert "'resnet101'" in str(e.value)
    for name in NAMES:
        assert name in str(e.value)


def test_unknown_option():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stme'\] for model 'resnet18'; allowed:"):
        models.build("resnet18", stme="cifar")
    with pytest.raises(ValueError, match="stem"):
        models.build("wrn28_2", stem="cifar")  # WRN has no stem option


def test_options():
    assert models.options("resnet50") == ["num_classes", "stem", "in_channels", "zero_init_residual"]
    assert "weight_norm" in models.options("convnet13")
