"""Per-dataset channel statistics and normalisation.

Recipes output pixels in [0, 1]; models usually want ``(x - mean) / std``
with the training set's per-channel statistics (pixel scale [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MEAN_STD", "mean_std", "normalize", "Normalize"]

# (mean, std) per channel, in [0, 1] pixel units, over each training set.
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # the values of the USB / TorchSSL semi-supervised benchmark
    "stl10": ((0.4409, 0.4279, 0.3868), (0.2683, 0.2610, 0.2687)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
    # scikit-learn's 8x8 digits, values 0..16 scaled to 0..255 (all 1,797 images)
    "digits": ((0.3053,), (0.3759,)),
}


def mean_std(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Look up ``(mean, std)`` for a dataset name of :data:`MEAN_STD`."""
    if dataset not in MEAN_STD:
        raise ValueError(f"no mean/std for dataset {dataset!r}; known: {', '.join(sorted(MEAN_STD))}")
    return MEAN_STD[dataset]


Stats = Sequence[float] | float | torch.Tensor


def _stats(values: Stats, channels: int, name: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device).flatten()
    if t.numel() not in (1, channels):
        raise ValueError(f"{name} has {t.numel()} values but the batch has {channels} channel(s)")
    return t.view(1, -1, 1, 1)


def normalize(x: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """``(x - mean) / std`` per channel.

    Args:
        x: ``(B, C, H, W)`` float in [0, 1] (uint8 is scaled by 1/255 first).
        mean: one value, or one per channel.
        std: one value, or one per channel (positive).

    Returns:
        ``(B, C, H, W)`` float.
    """
    if x.dim() != 4:
        raise ValueError(f"normalize expects (B, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    elif not x.is_floating_point():
        raise ValueError(f"normalize expects uint8 or float input, got {x.dtype}")
    m = _stats(mean, x.shape[1], "mean", x)
    if not isinstance(std, torch.Tensor) and min(torch.as_tensor(std, dtype=torch.float64).flatten().tolist()) <= 0:
        raise ValueError(f"std must be positive, got {std!r}")
    s = _stats(std, x.shape[1], "std", x)
    return (x - m) / s


class Normalize(nn.Module):
    """Module form of :func:`normalize`; moves with ``.to(device)``.

    Args:
        mean: a dataset name of :data:`MEAN_STD`, or per-channel means.
        std: per-channel stds (omit when ``mean`` is a dataset name).

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)`` float.
    """

    def __init__(self, mean: str | Sequence[float] | float, std: Sequence[float] | float | None = None) -> None:
        super().__init__()
        if isinstance(mean, str):
            if std is not None:
                raise ValueError(f"pass either a dataset name or mean and std, not both (got {mean!r} and {std!r})")
            mean, std = mean_std(mean)
        elif std is None:
            raise ValueError("Normalize needs std when mean is not a dataset name")
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std!r}")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten(), persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.tolist())
        std = tuple(round(v, 4) for v in self.std.tolist())
        return f"mean={mean}, std={std}"
