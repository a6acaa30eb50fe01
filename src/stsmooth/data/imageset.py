"""An in-memory image dataset held as one uint8 tensor.

Every in-memory reader (digits, MNIST, CIFAR, SVHN, STL-10, npz) returns an
:class:`ImageSet`. Keeping the whole set as a single ``(N, C, H, W)`` uint8
tensor lets the training loop put it on the accelerator once and gather
batches by index there (see :class:`stsmooth.data.loader.DeviceLoader`), which
is what the papers' small-image experiments need to be fast (FixMatch on
CIFAR, paper 000 §4.5; Mean Teacher on SVHN/CIFAR-10, paper 004 §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

UNLABELED = -1  # label value of an image without a label (STL-10 unlabeled, SVHN extra used as such)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """The one conversion of the library's images to network input: uint8 -> float32 in [0, 1].

    Models, evaluation and augmentation all read images in this format
    (uint8 ``(B, C, H, W)``, 0..255) or as floats already in [0, 1], which
    pass through with their values unchanged (cast to float32; a float32
    tensor is returned as it is).

    Args:
        images: (B, C, H, W) uint8 or floating tensor.

    Returns:
        (B, C, H, W) float32; uint8 values divided by 255.
    """
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def _as_index(idx, n: int) -> torch.Tensor:
    """Turns a list / numpy array / tensor / bool mask into an int64 index tensor."""
    if isinstance(idx, torch.Tensor):
        t = idx
    else:
        t = torch.as_tensor(np.asarray(idx))
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise ValueError(f"boolean mask has shape {tuple(t.shape)}; expected ({n},)")
        return t.nonzero().flatten()
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise ValueError(f"index dtype {t.dtype} is not an integer or bool type")
    t = t.to(torch.int64).flatten()
    if t.numel() and (int(t.min()) < -n or int(t.max()) >= n):
        raise ValueError(f"index out of range for a set of {n} images: min {int(t.min())}, max {int(t.max())}")
    return t


@dataclass
class ImageSet:
    """Images and labels of one split, in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), channels first, values 0..255.
        labels: int64 tensor (N,); ``-1`` marks an unlabeled image.
        classes: class names; label ``k`` names ``classes[k]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise ValueError(f"ImageSet.images must be a uint8 tensor (N, C, H, W); got {got}")
        labels = torch.as_tensor(self.labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
            raise ValueError(f"ImageSet.labels must be an integer tensor (N,); got {labels.dtype} {tuple(labels.shape)}")
        self.labels = labels.to(torch.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"ImageSet has {len(self.images)} images but {len(self.labels)} labels")
        self.classes = [str(c) for c in self.classes]
        if self.labels.numel():
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < UNLABELED or (hi >= len(self.classes) and hi >= 0):
                raise ValueError(
                    f"ImageSet labels span {lo}..{hi} but there are {len(self.classes)} classes (allowed: -1..{len(self.classes) - 1})"
                )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``), also for an unlabeled split."""
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"ImageSet({len(self)} images {c}x{h}x{w} uint8, {self.num_classes} classes, device={self.device})"

    def subset(self, idx) -> ImageSet:
        """Images at ``idx`` (int list/array/tensor or bool mask (N,)), same classes."""
        t = _as_index(idx, len(self)).to(self.images.device)
        return ImageSet(self.images.index_select(0, t), self.labels.index_select(0, t.to(self.labels.device)), list(self.classes))

    def to(self, device) -> ImageSet:
        """Copy on ``device`` (the same object when already there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ImageSet(self.images.to(device), self.labels.to(device), list(self.classes))

    def unlabeled(self) -> ImageSet:
        """The same images with every label set to ``-1``."""
        return ImageSet(self.images, torch.full_like(self.labels, UNLABELED), list(self.classes))
