"""Batched geometric transforms with per-sample random parameters.

Every function draws one set of parameters per image from torch's global
generator on the input's device and transforms the whole batch at once (one
``grid_sample`` or ``gather``), so there is no per-sample Python.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_flip", "random_translate", "random_resized_crop", "warp_affine"]


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability ``p``.

    Args:
        x: ``(B, C, H, W)``.
        p: flip probability per image.

    Returns:
        ``(B, C, H, W)``.
    """
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_translate(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image by whole pixels, reflecting at the border.

    Equivalent to "pad by ``max_shift`` with reflection, then a random crop of
    the original size", the CIFAR recipe of FixMatch (4 px = 12.5% of 32) and
    Mean Teacher (2 px, paper 004 §3 / App. B.1).

    Args:
        x: ``(B, C, H, W)``.
        max_shift: largest shift in pixels, per axis; shifts are uniform
            integers in ``[-max_shift, max_shift]``. Must be < min(H, W).

    Returns:
        ``(B, C, H, W)``.
    """
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    if max_shift >= min(h, w):
        raise ValueError(f"translation of {max_shift} px needs images larger than that, got {h}x{w}")
    padded = F.pad(x, (max_shift,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), device=x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    # two gathers (rows, then columns) instead of one per-sample slice
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, padded.shape[-1]))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def warp_affine(
    x: torch.Tensor, theta: torch.Tensor, size: int | None = None, fill: float | None = 0.5
) -> torch.Tensor:
    """Sample each image through its own affine map (bilinear).

    Args:
        x: ``(B, C, H, W)``.
        theta: ``(B, 2, 3)`` maps output coordinates to input coordinates, both
            normalised to ``[-1, 1]`` (``align_corners=False``), as
            :func:`torch.nn.functional.affine_grid` expects.
        size: output side length (default: keep ``H × W``).
        fill: value for pixels that come from outside the image; ``None``
            repeats the border pixels instead.

    Returns:
        ``(B, C, size, size)``.
    """
    b, c, h, w = x.shape
    out_hw = (h, w) if size is None else (size, size)
    grid = F.affine_grid(theta.to(x.dtype), [b, c, *out_hw], align_corners=False)
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # zero padding of (x - fill) is padding of x with `fill`
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.add_(fill)


def _crop_boxes(
    b: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], device, attempts: int = 10
):
    """torchvision's RandomResizedCrop box rule, drawn for all images at once.

    Returns (crop_h, crop_w, top, left) float tensors of shape (B,), in pixels.
    """
    area = h * w * torch.empty(b, attempts, device=device).uniform_(scale[0], scale[1])
    log_r = torch.empty(b, attempts, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r)
    ch = torch.sqrt(area / r)
    ok = (cw <= w) & (ch <= h)
    first = torch.argmax(ok.to(torch.uint8), dim=1, keepdim=True)  # first valid attempt
    cw = cw.gather(1, first).squeeze(1)
    ch = ch.gather(1, first).squeeze(1)
    # fallback when no attempt fits: the largest centred box of allowed ratio
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = float(w), w / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = h * ratio[1], float(h)
    else:
        fw, fh = float(w), float(h)
    any_ok = ok.any(dim=1)
    cw = torch.where(any_ok, cw, torch.full_like(cw, fw))
    ch = torch.where(any_ok, ch, torch.full_like(ch, fh))
    top = torch.rand(b, device=device) * (h - ch)
    left = torch.rand(b, device=device) * (w - cw)
    return ch, cw, top, left


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    flip_p: float = 0.0,
) -> torch.Tensor:
    """Random resized crop (SimCLR/BYOL, paper 000 §4.1), optionally fused with a flip.

    The box follows torchvision's rule (area fraction uniform in ``scale``,
    log aspect ratio uniform in ``ratio``, 10 tries, centred fallback) but is
    kept at sub-pixel precision. The flip is folded into the same affine map,
    so it costs nothing extra.

    Args:
        x: ``(B, C, H, W)``, any H, W.
        size: output side length.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio (width / height).
        flip_p: probability of a horizontal flip per image.

    Returns:
        ``(B, C, size, size)``.
    """
    b, _, h, w = x.shape
    ch, cw, top, left = _crop_boxes(b, h, w, scale, ratio, x.device)
    sx = cw / w
    if flip_p > 0:
        flip = torch.rand(b, device=x.device) < flip_p
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    return warp_affine(x, theta, size=size, fill=None)
