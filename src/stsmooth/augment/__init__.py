"""Batched, on-device augmentation recipes (``stsmooth.augment``).

A recipe is an ``nn.Module`` mapping a batch ``(B, C, H, W)`` of uint8 or
float-in-[0, 1] images (C = 1 or 3) on any device to float32 in [0, 1] of
shape ``(B, C, size, size)``. Every image gets its own random parameters, all
drawn from torch's generator on the batch's device, so ``torch.manual_seed``
reproduces a run; there is no per-sample Python.

Recipes (papers 000 §4.1, 003 §5, 004 §3):

================ ==============================================================
``byol1``        BYOL view 1: crop (0.08-1), flip, jitter p=0.8, gray p=0.2, blur p=1.0
``byol2``        BYOL view 2: the same, blur p=0.1, solarise p=0.2
``moco``         MoCo v2: crop (0.2-1), flip, jitter (0.4,0.4,0.4,0.1) p=0.8, gray p=0.2, blur p=0.5
``fixmatch_weak``   flip + translate by up to 12.5%
``fixmatch_strong`` weak + RandAugment (2 ops, random magnitudes) + Cutout (<= 0.5)
``mean_teacher`` translate by up to 2 px, flip, Gaussian noise sigma 0.15 (standardised units)
``eval``         resize and centre crop
================ ==============================================================

Example:
    >>> import torch
    >>> aug = build("byol2", 32)
    >>> views = aug(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from stsmooth.augment.base import Eval, Recipe, check_size
from stsmooth.augment.normalize import MEAN_STD, Normalize, mean_std, normalize
from stsmooth.augment.semi import FixMatchStrong, FixMatchWeak, MeanTeacherNoise
from stsmooth.augment.views import View

__all__ = [
    "build",
    "names",
    "options",
    "Recipe",
    "View",
    "FixMatchWeak",
    "FixMatchStrong",
    "MeanTeacherNoise",
    "Eval",
    "MEAN_STD",
    "mean_std",
    "normalize",
    "Normalize",
]

# recipe name -> (class, preset options); user options override the presets
_RECIPES: dict[str, tuple[type[Recipe], dict[str, Any]]] = {
    "byol1": (View, {"blur_p": 1.0, "solarize_p": 0.0}),
    "byol2": (View, {"blur_p": 0.1, "solarize_p": 0.2}),
    "moco": (View, {"crop_scale": (0.2, 1.0), "jitter": (0.4, 0.4, 0.4, 0.1), "blur_p": 0.5, "solarize_p": 0.0}),
    "fixmatch_weak": (FixMatchWeak, {}),
    "fixmatch_strong": (FixMatchStrong, {}),
    "mean_teacher": (MeanTeacherNoise, {}),
    "eval": (Eval, {}),
}


def names() -> list[str]:
    """The recipe names :func:`build` accepts."""
    return list(_RECIPES)


def options(recipe: str) -> dict[str, Any]:
    """The options of a recipe with their effective defaults (presets applied)."""
    cls, preset = _lookup(recipe)
    params = inspect.signature(cls.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("self", "size")}
    return {**defaults, **preset}


def _lookup(recipe: str) -> tuple[type[Recipe], dict[str, Any]]:
    if recipe not in _RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; choose one of {', '.join(_RECIPES)}")
    return _RECIPES[recipe]


def build(recipe: str, size: int, **opts: Any) -> nn.Module:
    """Build an augmentation recipe.

    Args:
        recipe: one of :func:`names`.
        size: output side length in pixels (>= 2), e.g. 8 (digits), 32 (CIFAR), 224 (ImageNet).
        **opts: recipe options, see :func:`options` (e.g. ``flip=False`` for
            digits, ``crop_scale=(0.2, 1.0)``, ``blur=False``, ``color=False``).

    Returns:
        An ``nn.Module``: ``(B, C, H, W)`` uint8/float -> ``(B, C, size, size)`` float32 in [0, 1].

    Raises:
        ValueError: unknown recipe, bad size, or an option the recipe does not have.
    """
    cls, preset = _lookup(recipe)
    check_size(size)
    allowed = options(recipe)
    for key in opts:
        if key not in allowed:
            raise ValueError(f"augmentation recipe {recipe!r} has no option {key!r}; options: {', '.join(allowed)}")
    return cls(size, **{**preset, **opts})
