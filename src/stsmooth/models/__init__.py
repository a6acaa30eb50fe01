"""Backbones and heads: `build(name, **options)` and `names()`.

Backbones (paper 000 §4.1, paper 004):

| name         | network                                  | num_features | options |
|--------------|------------------------------------------|--------------|---------|
| ``resnet18`` | ResNet-18, torchvision names             | 512          | num_classes, stem, in_channels, zero_init_residual |
| ``resnet50`` | ResNet-50, torchvision names             | 2048         | num_classes, stem, in_channels, zero_init_residual |
| ``wrn28_2``  | FixMatch's WRN-28-2 (CIFAR-10)           | 128          | num_classes, dropout, in_channels |
| ``wrn28_8``  | FixMatch's WRN-28-8 (CIFAR-100)          | 512          | num_classes, dropout, in_channels |
| ``convnet13``| Mean Teacher's 13-layer ConvNet          | 128          | num_classes, dropout, in_channels, weight_norm |
| ``digits_cnn``| small CNN for 8×8 digits                | 128          | num_classes, in_channels, width |
| ``fmnist_cnn``| the same, stride-2 first layer, 28×28   | 64           | num_classes, in_channels, width |

Every backbone has ``num_features`` and ``forward_features(x) -> (B,
num_features)``. ``num_classes`` defaults to 0 everywhere: ``fc`` is then
``nn.Identity`` and ``forward`` returns the features; with ``num_classes > 0``
``forward`` returns logits.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from stsmooth.models.base import Backbone
from stsmooth.models.convnet13 import ConvNet13, convnet13
from stsmooth.models.heads import MLP
from stsmooth.models.resnet import ResNet, resnet18, resnet50
from stsmooth.models.small import DigitsCNN, digits_cnn, fmnist_cnn
from stsmooth.models.wide_resnet import WideResNet, wrn28_2, wrn28_8

_FACTORIES: dict[str, Callable[..., Backbone]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "wrn28_2": wrn28_2,
    "wrn28_8": wrn28_8,
    "convnet13": convnet13,
    "digits_cnn": digits_cnn,
    "fmnist_cnn": fmnist_cnn,
}


def names() -> list[str]:
    """Names accepted by `build`, sorted."""
    return sorted(_FACTORIES)


def options(name: str) -> list[str]:
    """Option names that `build(name, ...)` accepts."""
    return list(inspect.signature(_factory(name)).parameters)


def _factory(name: str) -> Callable[..., Backbone]:
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid names: {names()}")
    return _FACTORIES[name]


def build(name: str, **options_: object) -> nn.Module:
    """Build a backbone by name.

    Args:
        name: one of `names()`.
        **options_: keyword options of that backbone (see the table above),
            e.g. ``build("resnet50", stem="cifar", num_classes=10)``.

    Returns:
        The backbone; ``model(x)`` maps (B, C, H, W) to (B, num_classes)
        logits, or to (B, num_features) features when num_classes is 0.

    Raises:
        ValueError: unknown name, unknown option or invalid option value.
    """
    factory = _factory(name)
    allowed = options(name)
    unknown = sorted(set(options_) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {allowed}")
    return factory(**options_)


__all__ = [
    "Backbone", "ConvNet13", "DigitsCNN", "MLP", "ResNet", "WideResNet",
    "build", "convnet13", "digits_cnn", "fmnist_cnn", "names", "options",
    "resnet18", "resnet50", "wrn28_2", "wrn28_8",
]
