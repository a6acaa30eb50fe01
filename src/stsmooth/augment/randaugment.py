"""FixMatch's RandAugment and Cutout, batched with per-image ops and magnitudes.

FixMatch (Sohn et al. 2020, App. D, Table 12; used by paper 000 §4.1 for the
strong view) applies N = 2 ops drawn uniformly from the 14 below, each at a
magnitude drawn uniformly from its range *per image*, then Cutout. Ranges:

========== ===================== =============================================
op          magnitude range       effect
========== ===================== =============================================
identity    -                     none
autocontrast -                    stretch each channel to [0, 1]
equalize    -                     histogram equalisation per channel (PIL)
rotate      [-30, 30] degrees     about the centre
solarize    threshold [0, 1]      invert pixels >= threshold
color       [0.05, 0.95]          blend with grayscale
posterize   [4, 8] bits           keep the high bits
contrast    [0.05, 0.95]          blend with mean luma
brightness  [0.05, 0.95]          blend with black
sharpness   [0.05, 0.95]          blend with PIL's smoothed image
shear_x/y   [-0.3, 0.3]           about the centre
translate_x/y [-0.3, 0.3] of size
cutout      side [0, 0.5] of size gray square at a random centre
========== ===================== =============================================

Pixels that geometric ops bring in from outside are gray (0.5), as FixMatch
fills with (128, 128, 128). Shears are about the image centre rather than
PIL's top-left corner, which only removes a shear-dependent translation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stsmooth.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    blend,
    solarize,
)
from stsmooth.augment.dispatch import apply_per_sample
from stsmooth.augment.geometry import warp_affine

__all__ = ["OPS", "rand_augment", "cutout", "autocontrast", "equalize", "posterize", "sharpness"]

_FILL = 0.5


def _signed(m: torch.Tensor, max_value: float) -> torch.Tensor:
    """Map m in [0, 1] to [-max_value, max_value]."""
    return (2.0 * m - 1.0) * max_value


def _enhance(m: torch.Tensor) -> torch.Tensor:
    """Map m in [0, 1] to FixMatch's enhancement factor range [0.05, 0.95]."""
    return 0.05 + 0.9 * m


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to span [0, 1] (PIL autocontrast, cutoff 0)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    flat = span <= 1e-6  # PIL leaves constant channels alone
    return torch.where(flat, x, (x - lo) / span.clamp_min(1e-6))


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's histogram equalisation, per channel of each image, all at once.

    Args:
        x: ``(B, C, H, W)`` in [0, 1].

    Returns:
        ``(B, C, H, W)`` on the 256-level grid.
    """
    b, c, h, w = x.shape
    q = (x * 255).round_().long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    levels = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, levels, torch.zeros_like(levels)).amax(dim=1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255  # (BC, 1); PIL's step ignores the top bin
    lut = ((hist.cumsum(1) - hist + step // 2) // step.clamp_min(1)).clamp_max_(255)
    out = torch.where(step > 0, lut.gather(1, q), q)  # step 0: PIL returns the image unchanged
    return out.view(b, c, h, w).to(x.dtype) / 255


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` ``(B,)`` bits of each 8-bit value."""
    q = (x * 255).round_().to(torch.int32)
    mask = (255 << (8 - bits.to(torch.int32))) & 255
    return (q & mask.view(-1, 1, 1, 1)).to(x.dtype) / 255


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness: blend with a 3x3 smoothed copy (border kept).

    PIL's smoothing kernel is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, i.e.
    (3x3 box sum + 4 x centre) / 13; a box sum is a cheap average pool.
    """
    if min(x.shape[-2:]) < 3:
        return x
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = (F.avg_pool2d(x, 3, stride=1) * 9 + 4 * x[..., 1:-1, 1:-1]) / 13
    return blend(x, smooth, factor)


def _affine(x: torch.Tensor, a, b, c, d, tx, ty) -> torch.Tensor:
    """Warp with per-image matrices [[a, b, tx], [c, d, ty]] (each ``(n,)``) in normalised coordinates."""
    theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)
    return warp_affine(x, theta, fill=_FILL)


def _rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    angle = _signed(m, 30.0) * (math.pi / 180)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    return _affine(x, cos, -sin, sin, cos, zero, zero)


def _shear(axis: int):
    def op(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        s, one, zero = _signed(m, 0.3), torch.ones_like(m), torch.zeros_like(m)
        return _affine(x, one, s, zero, one, zero, zero) if axis == 0 else _affine(x, one, zero, s, one, zero, zero)

    return op


def _translate(axis: int):
    def op(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        t, one, zero = 2.0 * _signed(m, 0.3), torch.ones_like(m), torch.zeros_like(m)  # image width is 2 in [-1, 1]
        return _affine(x, one, zero, zero, one, t, zero) if axis == 0 else _affine(x, one, zero, zero, one, zero, t)

    return op


# name -> op(images (n, C, H, W), magnitude (n,) in [0, 1]); None is identity
OPS = {
    "identity": None,
    "autocontrast": lambda x, m: autocontrast(x),
    "equalize": lambda x, m: equalize(x),
    "rotate": _rotate,
    "solarize": lambda x, m: solarize(x, m),
    "color": lambda x, m: adjust_saturation(x, _enhance(m)),
    "posterize": lambda x, m: posterize(x, (4 + torch.floor(m * 5)).clamp_max(8)),
    "contrast": lambda x, m: adjust_contrast(x, _enhance(m)),
    "brightness": lambda x, m: adjust_brightness(x, _enhance(m)),
    "sharpness": lambda x, m: sharpness(x, _enhance(m)),
    "shear_x": _shear(0),
    "shear_y": _shear(1),
    "translate_x": _translate(0),
    "translate_y": _translate(1),
}


def rand_augment(x: torch.Tensor, num_ops: int = 2) -> torch.Tensor:
    """Apply ``num_ops`` ops from :data:`OPS` to each image, each image its own ops and magnitudes.

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        num_ops: ops per image (FixMatch: 2).

    Returns:
        ``(B, C, H, W)`` in [0, 1].
    """
    ops = list(OPS.values())
    for _ in range(num_ops):
        # drawn on the host: the dispatch groups images by op without waiting for the device
        choice = torch.randint(0, len(ops), (x.shape[0],))
        magnitude = torch.rand(x.shape[0], device=x.device)
        x = apply_per_sample(x, choice, ops, magnitude).clamp_(0.0, 1.0)
    return x


def cutout(x: torch.Tensor, max_fraction: float = 0.5, fill: float = _FILL) -> torch.Tensor:
    """Gray out one square per image: side uniform in ``[0, max_fraction] * W``, centre uniform.

    The square is clipped at the border, as in FixMatch's Cutout.

    Args:
        x: ``(B, C, H, W)``.
        max_fraction: largest side as a fraction of the image width.
        fill: value of the square.

    Returns:
        ``(B, C, H, W)``.
    """
    if max_fraction <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    half = torch.rand(b, 1, 1, device=dev) * (max_fraction * w / 2)
    cy = torch.rand(b, 1, 1, device=dev) * h
    cx = torch.rand(b, 1, 1, device=dev) * w
    ys = torch.arange(h, device=dev, dtype=x.dtype).view(1, h, 1) + 0.5  # pixel centres
    xs = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, w) + 0.5
    inside = ((ys - cy).abs() < half) & ((xs - cx).abs() < half)  # (B, H, W)
    return x.masked_fill(inside[:, None], fill)
