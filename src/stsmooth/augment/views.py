"""Self-supervised views: BYOL's asymmetric pair and MoCo v2's view.

Paper 000 §4.1 trains BYOL and MoCo v2 with SimCLR's augmentations (random
resized crop, horizontal flip, colour jitter, grayscale, Gaussian blur), and
BYOL's second view adds solarisation. The probabilities are BYOL's (Grill et
al. 2020, Table 6): blur 1.0 / 0.1 and solarise 0.0 / 0.2 on views 1 / 2;
MoCo v2 (Chen et al. 2020) uses crop scale (0.2, 1), jitter (0.4, 0.4, 0.4,
0.1) and blur p = 0.5 on both views.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stsmooth.augment.base import Recipe
from stsmooth.augment.color import (
    color_jitter,
    random_gaussian_blur,
    random_grayscale,
    solarize,
)
from stsmooth.augment.geometry import random_resized_crop

__all__ = ["View"]


def _pair(name: str, value: Sequence[float], low: float = 0.0, high: float = float("inf")) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    if not low <= a <= b <= high:
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return a, b


def _prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class View(Recipe):
    """One random view for contrastive / BYOL training.

    Order as in BYOL: crop (+ flip) -> colour jitter -> grayscale -> blur ->
    solarise. Blur and flip commute with the point-wise colour ops, so this
    also covers MoCo v2's order.

    Args:
        size: output side length.
        crop_scale: area range of the random resized crop.
        ratio: aspect-ratio range of the crop.
        flip: random horizontal flip (p = 0.5); False for digits.
        color: colour jitter and random grayscale on/off.
        jitter: (brightness, contrast, saturation, hue) strengths.
        jitter_p: probability of colour jitter per image.
        gray_p: probability of grayscale per image.
        blur: Gaussian blur on/off.
        blur_p: probability of blur per image.
        blur_sigma: sigma range in pixels.
        solarize_p: probability of solarisation per image.

    Shape:
        ``(B, C, H, W)`` uint8 or float in [0, 1] -> ``(B, C, size, size)`` float32.
        C = 1 runs brightness/contrast jitter only (no saturation, hue, grayscale).
    """

    def __init__(
        self,
        size: int,
        crop_scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        flip: bool = True,
        color: bool = True,
        jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur: bool = True,
        blur_p: float = 1.0,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        solarize_p: float = 0.0,
    ) -> None:
        super().__init__(size)
        self.crop_scale = _pair("crop_scale", crop_scale, 0.0, 1.0)
        if self.crop_scale[1] <= 0:
            raise ValueError(f"crop_scale must allow a non-empty crop, got {crop_scale!r}")
        self.ratio = _pair("ratio", ratio, 1e-6)
        self.flip = bool(flip)
        self.color = bool(color)
        if len(jitter) != 4 or any(float(j) < 0 for j in jitter) or float(jitter[3]) > 0.5:
            raise ValueError(f"jitter must be 4 non-negative strengths (hue <= 0.5), got {jitter!r}")
        self.jitter = tuple(float(j) for j in jitter)
        self.jitter_p = _prob("jitter_p", jitter_p)
        self.gray_p = _prob("gray_p", gray_p)
        self.blur = bool(blur)
        self.blur_p = _prob("blur_p", blur_p)
        self.blur_sigma = _pair("blur_sigma", blur_sigma, 1e-6)
        self.solarize_p = _prob("solarize_p", solarize_p)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = random_resized_crop(x, self.size, self.crop_scale, self.ratio, flip_p=0.5 if self.flip else 0.0)
        if self.color:
            x = color_jitter(x, *self.jitter, p=self.jitter_p)
            x = random_grayscale(x, self.gray_p)
        if self.blur:
            x = random_gaussian_blur(x, self.blur_p, self.blur_sigma)
        if self.solarize_p > 0:
            hit = torch.rand(x.shape[0], device=x.device) < self.solarize_p
            x = torch.where(hit[:, None, None, None], solarize(x, 0.5), x)
        return x

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, crop_scale={self.crop_scale}, flip={self.flip}, color={self.color}, "
            f"jitter={self.jitter}, jitter_p={self.jitter_p}, gray_p={self.gray_p}, blur={self.blur}, "
            f"blur_p={self.blur_p}, solarize_p={self.solarize_p}"
        )
