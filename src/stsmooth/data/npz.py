"""Bring-your-own in-memory data as a NumPy ``.npz`` file.

The file holds ``images``: uint8 (N, H, W) (gray) or (N, H, W, C) (channels
last, as images are usually stored), ``labels``: integers (N,) in
0..K-1 or -1 for unlabeled, and optionally ``classes``: strings (K,).
It is opened with ``allow_pickle=False``, so an object array is refused
rather than unpickled.

``root`` is either the ``.npz`` file itself (``split`` is then ignored) or a
folder holding ``<split>.npz`` (``train.npz``, ``test.npz``, ...).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from stsmooth.data.imageset import ImageSet


def resolve(root, split: str) -> Path:
    """The ``.npz`` file for ``root``/``split`` (see module docstring)."""
    if root is None:
        raise ValueError("npz: root is required (a .npz file or a folder with <split>.npz)")
    root = Path(root)
    path = root if root.suffix == ".npz" or root.is_file() else root / f"{split}.npz"
    if not path.exists():
        raise FileNotFoundError(f"npz: missing file {path.name} (expected at {path}); write it with numpy.savez(path, images=..., labels=...)")
    return path


def read(root, split: str = "train", download: bool = False) -> ImageSet:
    """Reads images/labels(/classes) from a ``.npz`` file.

    Args:
        root: the ``.npz`` file or a folder with ``<split>.npz``.
        split: used only when ``root`` is a folder.
        download: not supported; must be False.

    Returns:
        ImageSet with images (N, C, H, W) uint8 (C = 1 for (N, H, W) input).

    Raises:
        ValueError: unreadable file, missing key, wrong dtype/shape, label out
            of range (naming the file).
    """
    if download:
        raise ValueError("npz: download=True is not possible for your own files")
    path = resolve(root, split)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
    for key in ("images", "labels"):
        if key not in arrays:
            raise ValueError(f"{path}: no array {key!r} (has: {', '.join(sorted(arrays)) or 'none'}); expected images and labels")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"{path}: images is {images.dtype} {images.shape}; expected uint8 (N, H, W) or (N, H, W, C)")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels is {labels.dtype} {labels.shape}; expected integers (N,)")
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{path}: no images (images has shape {images.shape}); expected uint8 (N, H, W) or (N, H, W, C) with N > 0")
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        hint = " (channels first? transpose to channels last: images.transpose(0, 2, 3, 1))" if images.shape[1] in (1, 3) else ""
        raise ValueError(f"{path}: images has shape {images.shape}, {images.shape[-1]} channels last; expected "
                         f"(N, H, W, C) with C = 1 or 3 (gray or RGB; drop an alpha channel){hint}")
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    labels = labels.astype(np.int64)
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
    else:
        classes = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
    if labels.size and (labels.min() < -1 or labels.max() >= len(classes)):
        raise ValueError(f"{path}: labels span {labels.min()}..{labels.max()}; allowed -1..{len(classes) - 1}")
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), classes)
