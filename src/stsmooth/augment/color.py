"""Batched photometric ops with per-sample factors (torchvision/PIL formulas).

All take float ``(B, C, H, W)`` in ``[0, 1]`` with C = 1 or 3 and return the
same. Ops that only make sense for colour (saturation, hue, grayscale) leave a
1-channel batch unchanged, so the same recipe runs on MNIST/digits.
"""

from __future__ import annotations

import torch
from kornia.filters import gaussian_blur2d

from stsmooth.augment.dispatch import apply_per_sample, to_device

__all__ = [
    "grayscale",
    "blend",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "random_grayscale",
    "random_gaussian_blur",
    "solarize",
    "blur_kernel_size",
]

# ITU-R 601 luma, as PIL's convert("L") and torchvision use
_LUMA = (0.299, 0.587, 0.114)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of ``(B, C, H, W)`` -> ``(B, 1, H, W)`` (identity for C = 1)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def blend(x: torch.Tensor, base: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``base + factor * (x - base)``, clamped: PIL's ImageEnhance rule.

    ``factor`` is ``(B,)``; 1 gives ``x``, 0 gives ``base``.
    """
    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    return (base + f * (x - base)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale intensities by ``factor`` ``(B,)`` (blend with black)."""
    return (x * factor.to(x.dtype).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean luma, ``factor`` ``(B,)``."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's grayscale, ``factor`` ``(B,)``; identity for C = 1."""
    if x.shape[1] == 1:
        return x
    return blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``factor`` ``(B,)`` turns (torchvision's hue_factor, in [-0.5, 0.5]).

    Same result as an HSV round trip (torchvision, kornia) but cheaper: a hue
    shift keeps each pixel's max and min, so only the hue angle is computed
    and RGB is rebuilt with the closed-form HSV->RGB rule
    ``c_n = max - chroma * clamp(min(k_n, 4 - k_n), 0, 1)``, ``k_n = (n + 6h) mod 6``.
    Identity for C = 1.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue6 = torch.remainder(hue + 6.0 * factor.to(x.dtype).view(-1, 1, 1), 6.0)  # hue in sixths of a turn
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(hue6 + n, 6.0)
        out.append(maxc - chroma * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
) -> torch.Tensor:
    """torchvision-style ColorJitter applied with probability ``p`` per image.

    Each selected image gets its own factors (brightness, contrast, saturation
    uniform in ``[max(0, 1-s), 1+s]``, hue uniform in ``[-hue, hue]``) and its
    own random order of the four adjustments, as torchvision draws per image.
    BYOL/SimCLR use (0.4, 0.4, 0.2, 0.1) with p = 0.8 (paper 000 §4.1);
    MoCo v2 uses (0.4, 0.4, 0.4, 0.1).

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        brightness, contrast, saturation, hue: jitter strengths.
        p: probability that an image is jittered at all.

    Returns:
        ``(B, C, H, W)``.
    """
    b, dev = x.shape[0], x.device
    factors = torch.stack(
        [
            _uniform(b, max(0.0, 1 - brightness), 1 + brightness, dev),
            _uniform(b, max(0.0, 1 - contrast), 1 + contrast, dev),
            _uniform(b, max(0.0, 1 - saturation), 1 + saturation, dev),
            _uniform(b, -hue, hue, dev),
        ],
        dim=1,
    )  # (B, 4)
    # The order and the skips are drawn on the host: the dispatch groups images by
    # adjustment without waiting for the device.
    order = torch.argsort(torch.rand(b, 4), dim=1)  # a random permutation per image
    skip = torch.rand(b) >= p
    order = torch.where(skip[:, None], torch.full_like(order, 4), order)  # index 4 = leave alone
    enabled = (brightness > 0, contrast > 0, saturation > 0 and x.shape[1] == 3, hue > 0 and x.shape[1] == 3)
    steps = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    ops = [
        (lambda im, f, k=k, fn=fn: fn(im, f[:, k])) if on else None for k, (fn, on) in enumerate(zip(steps, enabled))
    ]
    ops.append(None)
    if not any(enabled):
        return x
    for stage in range(4):
        x = apply_per_sample(x, order[:, stage], ops, factors)
    return x


def random_grayscale(x: torch.Tensor, p: float = 0.2) -> torch.Tensor:
    """Replace each RGB image by its luma (kept 3-channel) with probability ``p``; identity for C = 1."""
    if x.shape[1] == 1 or p <= 0:
        return x
    gray = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(gray[:, None, None, None], grayscale(x).expand_as(x), x)


def blur_kernel_size(size: int) -> int:
    """Odd kernel of about 10% of the image side, at least 3 (BYOL: 23 at 224)."""
    k = int(0.1 * size)
    return max(3, k + 1 if k % 2 == 0 else k)


def random_gaussian_blur(
    x: torch.Tensor, p: float, sigma: tuple[float, float] = (0.1, 2.0), kernel_size: int | None = None
) -> torch.Tensor:
    """Gaussian blur with probability ``p``, sigma uniform in ``sigma`` per image.

    Args:
        x: ``(B, C, H, W)``.
        p: probability per image (BYOL: 1.0 on view 1, 0.1 on view 2).
        sigma: range of the standard deviation in pixels.
        kernel_size: odd kernel side; default :func:`blur_kernel_size` of W.

    Returns:
        ``(B, C, H, W)``.
    """
    if p <= 0:
        return x
    b = x.shape[0]
    k = kernel_size or blur_kernel_size(x.shape[-1])
    # sigma is drawn on the host too: kornia checks sigma > 0 on the tensor it is given, which on
    # a GPU would wait for the device, and copies a host sigma to the device without waiting
    s = _uniform(b, sigma[0], sigma[1], torch.device("cpu"))
    if p >= 1:
        return gaussian_blur2d(x, (k, k), s[:, None].expand(b, 2).contiguous(), border_type="reflect")
    # which images are blurred is drawn on the host (torch's CPU generator): their number sets
    # the batch's shape, and reading it back from a GPU would stall the step
    chosen = torch.nonzero(torch.rand(b) < p).squeeze(1)
    if chosen.numel() == 0:
        return x
    idx = to_device(chosen, x.device)
    out = x.clone()
    out[idx] = gaussian_blur2d(x[idx], (k, k), s[chosen, None].expand(-1, 2).contiguous(), border_type="reflect")
    return out


def solarize(x: torch.Tensor, threshold: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` (scalar or ``(B,)``): PIL's solarize."""
    t = threshold.to(x.dtype).view(-1, 1, 1, 1) if isinstance(threshold, torch.Tensor) else threshold
    return torch.where(x < t, x, 1.0 - x)
