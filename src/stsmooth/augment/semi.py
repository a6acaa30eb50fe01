"""Semi-supervised recipes: FixMatch's weak and strong views, Mean Teacher's noise.

FixMatch (paper 000 §4.1, Sohn et al. 2020): the weak view is a horizontal
flip and a translation by up to 12.5% of the side (4 px on 32×32, reflected
at the border); the strong view is the weak one followed by RandAugment and
Cutout, as in FixMatch's reference pipeline.

Mean Teacher (paper 004 §3 and App. B.1, Table 5): random translations by
up to 2 px, horizontal flips, and Gaussian noise with sigma = 0.15 on the
input layer. The paper adds that noise to whitened / standardised inputs
(ZCA for CIFAR-10, zero mean and unit variance for SVHN), so here it is scaled
by the per-channel std of the normalisation that follows (``std``), keeping
the output in pixel units and [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stsmooth.augment.base import Recipe, fit_to_size
from stsmooth.augment.geometry import random_flip, random_translate
from stsmooth.augment.normalize import mean_std
from stsmooth.augment.randaugment import cutout, rand_augment

__all__ = ["FixMatchWeak", "FixMatchStrong", "MeanTeacherNoise"]


def _shift_px(size: int, translate: float) -> int:
    if not 0.0 <= translate < 1.0:
        raise ValueError(f"translate must be a fraction of the size in [0, 1), got {translate!r}")
    return min(round(translate * size), size - 1)


class FixMatchWeak(Recipe):
    """FixMatch's weak view: flip, then translate by up to ``translate`` × size.

    Args:
        size: output side length (inputs of another size are resized first).
        flip: random horizontal flip (p = 0.5).
        translate: largest shift as a fraction of the side (0.125 = 4 px at 32).

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, size, size)`` float32 in [0, 1].
    """

    def __init__(self, size: int, flip: bool = True, translate: float = 0.125) -> None:
        super().__init__(size)
        self.flip = bool(flip)
        self.translate = float(translate)
        self.shift = _shift_px(self.size, self.translate)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = fit_to_size(x, self.size)
        if self.flip:
            x = random_flip(x)
        return random_translate(x, self.shift)

    def extra_repr(self) -> str:
        return f"size={self.size}, flip={self.flip}, translate={self.translate} ({self.shift} px)"


class FixMatchStrong(FixMatchWeak):
    """FixMatch's strong view: the weak view, RandAugment (``num_ops`` per image), Cutout.

    Args:
        size: output side length.
        flip: random horizontal flip.
        translate: largest shift as a fraction of the side.
        num_ops: RandAugment ops per image (FixMatch: 2).
        cutout: largest Cutout side as a fraction of the size (FixMatch: 0.5); 0 disables.
    """

    def __init__(
        self, size: int, flip: bool = True, translate: float = 0.125, num_ops: int = 2, cutout: float = 0.5
    ) -> None:
        super().__init__(size, flip=flip, translate=translate)
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError(f"num_ops must be a non-negative integer, got {num_ops!r}")
        if not 0.0 <= cutout <= 1.0:
            raise ValueError(f"cutout must be a fraction of the size in [0, 1], got {cutout!r}")
        self.num_ops = num_ops
        self.cutout = float(cutout)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = super().augment(x)
        x = rand_augment(x, self.num_ops)
        return cutout(x, self.cutout)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_ops={self.num_ops}, cutout={self.cutout}"


class MeanTeacherNoise(Recipe):
    """Mean Teacher's input noise (paper 004 App. B.1): translate, flip, Gaussian noise.

    Args:
        size: output side length.
        flip: random horizontal flip (False for digits and SVHN, whose classes are not mirror-symmetric).
        shift: largest translation in whole pixels, per axis (004: 2).
        noise: Gaussian sigma in units of the standardised input (004: 0.15); 0 disables.
        std: per-channel std of the normalisation applied after this recipe,
            as a dataset name of :data:`MEAN_STD`, a float, or one float per
            channel; the noise in pixel units is ``noise * std``.

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, size, size)`` float32 in [0, 1] (noise is
        clipped at 0 and 1).
    """

    def __init__(
        self,
        size: int,
        flip: bool = True,
        shift: int = 2,
        noise: float = 0.15,
        std: str | float | Sequence[float] = "cifar10",
    ) -> None:
        super().__init__(size)
        if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift < self.size:
            raise ValueError(f"shift must be whole pixels in [0, {self.size}), got {shift!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        self.flip = bool(flip)
        self.shift = shift
        self.noise = float(noise)
        if isinstance(std, str):
            std = mean_std(std)[1]
        std = (float(std),) if isinstance(std, (int, float)) else tuple(float(s) for s in std)
        if not std or any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std!r}")
        self.std = std

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        x = fit_to_size(x, self.size)
        if self.flip:
            x = random_flip(x)
        x = random_translate(x, self.shift)
        if self.noise > 0:
            c = x.shape[1]
            if len(self.std) not in (1, c):
                raise ValueError(f"std has {len(self.std)} values {self.std} but the batch has {c} channel(s); "
                                 "pass std=<dataset name> or a single float")
            sigma = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * self.noise
            x = x + sigma * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, flip={self.flip}, shift={self.shift}px, noise={self.noise}, std={self.std}"
