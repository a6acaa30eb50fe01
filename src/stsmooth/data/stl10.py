"""STL-10 from the authors' binary release (``stl10_binary.tar.gz``).

Layout (Coates et al., https://cs.stanford.edu/~acoates/stl10/): ``*_X.bin``
holds uint8 images of 3×96×96, each colour plane stored *column-major*
(MATLAB order), so a plane read row-major is the transposed image;
``*_y.bin`` holds one byte per image, labels 1..10. Files, under
``<root>/stl10_binary/``: train_X/train_y (5,000), test_X/test_y (8,000),
unlabeled_X (100,000, no labels), class_names.txt, fold_indices.txt (the ten
predefined 1,000-image training folds). A standard semi-supervised benchmark
(FixMatch / USB protocol) whose unlabeled split is the unlabeled pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stsmooth.data.download import ensure_files
from stsmooth.data.imageset import UNLABELED, ImageSet

SPLITS = ("train", "test", "unlabeled")
FOLDER = "stl10_binary"
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
IMAGE_BYTES = 3 * 96 * 96
_CHUNK = 4096  # images transposed per step, so the peak memory stays ~ one copy of the split


def read_images(path: str | Path) -> np.ndarray:
    """Reads an STL-10 ``*_X.bin`` file into uint8 (N, 3, 96, 96), rows first.

    Raises:
        ValueError: file length not a positive multiple of 27,648 bytes.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise ValueError(f"{path}: {size} bytes is not a positive multiple of the {IMAGE_BYTES}-byte STL-10 image; the file is truncated or corrupt")
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)
    out = np.empty_like(raw)
    for i in range(0, len(raw), _CHUNK):
        # column-major planes: swap the last two axes
        out[i : i + _CHUNK] = raw[i : i + _CHUNK].transpose(0, 1, 3, 2)
    del raw
    return out


def read_labels(path: str | Path, count: int) -> np.ndarray:
    """Reads an STL-10 ``*_y.bin`` file (bytes 1..10) into int64 labels 0..9."""
    path = Path(path)
    y = np.fromfile(path, dtype=np.uint8)
    if len(y) != count:
        raise ValueError(f"{path}: {len(y)} labels but the images file has {count} images; a file is truncated or corrupt")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{path}: labels span {y.min()}..{y.max()}; expected 1..10")
    return y.astype(np.int64) - 1


def read_folds(root) -> list[np.ndarray]:
    """The ten predefined training folds (indices into the train split) from fold_indices.txt."""
    path = Path(root) / FOLDER / "fold_indices.txt"
    if not path.exists():
        raise FileNotFoundError(f"stl10: missing file fold_indices.txt (expected at {path}); it is part of stl10_binary.tar.gz")
    return [np.array(line.split(), dtype=np.int64) for line in path.read_text().splitlines() if line.strip()]


def read(root, split: str = "train", download: bool = False) -> ImageSet:
    """STL-10 ``split`` ("train", "test" or "unlabeled") as 3×96×96 uint8 images.

    The unlabeled split has every label set to -1.
    """
    if split not in SPLITS:
        raise ValueError(f"stl10: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    folder = root / FOLDER
    x_path = folder / f"{split}_X.bin"
    y_path = None if split == "unlabeled" else folder / f"{split}_y.bin"
    ensure_files("stl10", root, [x_path] + ([y_path] if y_path else []), download)
    images = read_images(x_path)
    labels = np.full(len(images), UNLABELED, dtype=np.int64) if y_path is None else read_labels(y_path, len(images))
    names_file = folder / "class_names.txt"
    classes = CLASSES
    if names_file.exists():
        names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
        classes = names if len(names) == len(CLASSES) else CLASSES
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), list(classes))
