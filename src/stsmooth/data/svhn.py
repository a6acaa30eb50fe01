"""SVHN (cropped digits, format 2) from the authors' ``.mat`` files.

Each ``<split>_32x32.mat`` (Netzer et al., http://ufldl.stanford.edu/housenumbers/)
is a MATLAB v5 file with ``X``: uint8 (32, 32, 3, N) and ``y``: (N, 1) with
labels 1..10, where 10 stands for the digit 0; we map 10 -> 0 so label k is
digit k. ``scipy.io.loadmat`` parses the MATLAB format itself (no pickle).
Splits: train (73,257), test (26,032), extra (531,131; usable as an extra
unlabeled pool, see :func:`stsmooth.data.unlabeled_split_name`). Mean Teacher
evaluates on SVHN with 250/500/1000 labels (paper 004 §3.1, Table 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stsmooth.data.download import ensure_files
from stsmooth.data.imageset import ImageSet

SPLITS = ("train", "test", "extra")
CLASSES = [str(i) for i in range(10)]


def read_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one SVHN ``.mat`` file.

    Returns:
        images uint8 (N, 3, 32, 32), labels int64 (N,) in 0..9.

    Raises:
        ValueError: unreadable file, missing ``X``/``y``, wrong shapes or
            labels outside 1..10 (naming the file).
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except MemoryError:
        raise
    except Exception as e:  # scipy's parser raises many types (MatReadError, IndexError, ...) on bad bytes
        raise ValueError(f"{path}: cannot read as a MATLAB v5 file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it is truncated or corrupt") from e
    for key in ("X", "y"):
        if key not in mat:
            raise ValueError(f"{path}: no variable {key!r}; an SVHN file has X (32, 32, 3, N) and y (N, 1)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: X is {x.dtype} {x.shape}; expected uint8 (32, 32, 3, N)")
    if len(y) != x.shape[3]:
        raise ValueError(f"{path}: X has {x.shape[3]} images but y has {len(y)} labels")
    if y.size and (y.min() < 0 or y.max() > 10 or not np.all(y == np.round(y))):
        raise ValueError(f"{path}: labels span {y.min()}..{y.max()}; expected integers 1..10")
    # (H, W, C, N) -> (N, C, H, W)
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return images, y.astype(np.int64) % 10


def read(root, split: str = "train", download: bool = False) -> ImageSet:
    """SVHN ``split`` ("train", "test" or "extra") as 3×32×32 uint8 images."""
    if split not in SPLITS:
        raise ValueError(f"svhn: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    path = Path(root) / f"{split}_32x32.mat"
    ensure_files("svhn", Path(root), [path], download)
    images, labels = read_mat(path)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), list(CLASSES))
