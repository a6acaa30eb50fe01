"""The input contract shared by every augmentation recipe.

A recipe takes a batch ``(B, C, H, W)`` of ``uint8`` images or floats in
``[0, 1]`` on any device and returns ``float32`` in ``[0, 1]`` of shape
``(B, C, size, size)``. This module holds that conversion, the resize to the
recipe's size, and the ``eval`` recipe, which is nothing else.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.data.imageset import to_float

__all__ = ["Recipe", "Eval", "to_unit_float", "fit_to_size", "check_size"]


def check_size(size: object) -> int:
    """Return ``size`` if it is an integer of at least 2, else raise ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"augmentation size must be an integer >= 2, got {size!r}")
    return size


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """Convert a batch to float32 in ``[0, 1]``.

    Args:
        x: ``(B, C, H, W)`` uint8 (0..255) or floating point in ``[0, 1]``;
            C must be 1 or 3.

    Returns:
        ``(B, C, H, W)`` float32 in ``[0, 1]``, a new tensor (safe to edit in place).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"augmentation input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"augmentation input must be (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"augmentation input must have 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.dtype == torch.uint8:
        return to_float(x)
    if not x.is_floating_point():
        raise ValueError(f"augmentation input must be uint8 or floating point, got {x.dtype}")
    # clamp rather than trust: float inputs that stray out of range would break
    # the [0, 1] contract of every op downstream (solarize, posterize, ...).
    return x.to(torch.float32).clamp(0.0, 1.0)


def fit_to_size(x: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """Resize the shorter side to ``size / crop_fraction`` and take the centre crop.

    With ``crop_fraction=0.875`` this is the usual ImageNet evaluation
    (resize 256, centre crop 224). Images already ``size × size`` with
    ``crop_fraction=1`` pass through untouched, which is the CIFAR/digits case.

    Args:
        x: ``(B, C, H, W)`` float.
        size: output side length.
        crop_fraction: fraction of the resized shorter side kept, in ``(0, 1]``.

    Returns:
        ``(B, C, size, size)``.
    """
    h, w = x.shape[-2:]
    if h == size and w == size and crop_fraction == 1.0:
        return x
    short = max(size, round(size / crop_fraction))
    if h <= w:
        new_h, new_w = short, max(short, round(w * short / h))
    else:
        new_h, new_w = max(short, round(h * short / w)), short
    if (new_h, new_w) != (h, w):
        # antialias only matters (and is only supported) when shrinking
        shrink = new_h < h or new_w < w
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=shrink)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top : top + size, left : left + size].clamp(0.0, 1.0)


class Recipe(nn.Module):
    """Base class: validates and converts the input, then calls ``augment``.

    Subclasses implement ``augment(x)`` on float32 ``(B, C, H, W)`` in [0, 1]
    and must return ``(B, C, size, size)``. All randomness comes from torch's
    global generators (of the input's device, and the CPU's for per-image op
    choices, see :mod:`stsmooth.augment.dispatch`), so ``torch.manual_seed``
    makes a run reproducible.

    Args:
        size: output side length (>= 2).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = check_size(size)

    def augment(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch: ``(B, C, H, W)`` uint8/float -> ``(B, C, size, size)`` float32 in [0, 1]."""
        x = to_unit_float(x)
        if x.shape[0] == 0:
            return x.new_zeros(0, x.shape[1], self.size, self.size)
        # the step runs under bf16 autocast on CUDA (RunConfig.amp); augmentations are pixel
        # arithmetic in float32 and must not have their convolutions (blur) lowered to bf16
        kind = x.device.type
        fp32 = torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else nullcontext()
        with fp32:
            out = self.augment(x).clamp_(0.0, 1.0)
        return out.contiguous()

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Eval(Recipe):
    """The ``eval`` recipe: resize and centre crop, nothing random.

    Args:
        size: output side length.
        crop_fraction: see :func:`fit_to_size` (0.875 for ImageNet-style evaluation).
    """

    def __init__(self, size: int, crop_fraction: float = 1.0) -> None:
        super().__init__(size)
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        self.crop_fraction = float(crop_fraction)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to_size(x, self.size, self.crop_fraction)
