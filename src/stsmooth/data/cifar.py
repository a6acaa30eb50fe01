"""CIFAR-10 and CIFAR-100 from their *binary* releases (nothing is unpickled).

Binary layout (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html): a
file is a sequence of fixed-size records. CIFAR-10: 1 label byte + 3,072
pixel bytes. CIFAR-100: 1 coarse-label byte, 1 fine-label byte + 3,072 pixel
bytes. The pixels are the red, green and blue 32×32 planes, each row-major,
which is exactly the (3, 32, 32) channels-first layout.

Folders after extraction of the archives:
    ``<root>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` and
    ``batches.meta.txt`` (class names);
    ``<root>/cifar-100-binary/{train,test}.bin`` and
    ``{fine,coarse}_label_names.txt``.
Used in paper 000 §4.5 (FixMatch on CIFAR-10/100) and paper 004 §3.1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stsmooth.data.download import ensure_files
from stsmooth.data.imageset import ImageSet

SPLITS = ("train", "test")
PIXELS = 3 * 32 * 32
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR100_DIR = "cifar-100-binary"


def read_records(path: str | Path, label_bytes: int, label_index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR binary file.

    Args:
        path: the ``.bin`` file.
        label_bytes: label bytes per record (1 for CIFAR-10, 2 for CIFAR-100).
        label_index: which label byte to keep (CIFAR-100: 0 coarse, 1 fine).
        num_classes: labels must be below this.

    Returns:
        images uint8 (N, 3, 32, 32), labels int64 (N,).

    Raises:
        ValueError: length not a multiple of the record size, or a label out
            of range (naming the file).
    """
    path = Path(path)
    record = label_bytes + PIXELS
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % record:
        raise ValueError(
            f"{path}: {data.size} bytes is not a positive multiple of the {record}-byte CIFAR record; the file is truncated or corrupt"
        )
    data = data.reshape(-1, record)
    labels = data[:, label_index].astype(np.int64)
    if labels.max() >= num_classes:
        raise ValueError(f"{path}: label {int(labels.max())} outside 0..{num_classes - 1}; the file is corrupt or of another CIFAR version")
    return data[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _names(path: Path, fallback: list[str]) -> list[str]:
    if path.exists():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) == len(fallback):
            return names
    return fallback


def _read(files: list[Path], label_bytes: int, label_index: int, classes: list[str]) -> ImageSet:
    parts = [read_records(f, label_bytes, label_index, len(classes)) for f in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts])
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), classes)


def _check_split(dataset: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def read_cifar10(root, split: str = "train", download: bool = False) -> ImageSet:
    """CIFAR-10 ``split`` ("train": 50,000, "test": 10,000) as 3×32×32 uint8 images."""
    _check_split("cifar10", split)
    folder = Path(root) / CIFAR10_DIR
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    files = [folder / n for n in names]
    ensure_files("cifar10", Path(root), files, download)
    classes = _names(folder / "batches.meta.txt", CIFAR10_CLASSES)
    return _read(files, 1, 0, classes)


def read_cifar100(root, split: str = "train", download: bool = False, labels: str = "fine") -> ImageSet:
    """CIFAR-100 ``split`` ("train": 50,000, "test": 10,000) as 3×32×32 uint8 images.

    Args:
        labels: "fine" (100 classes, the usual benchmark) or "coarse" (20 super-classes).
    """
    _check_split("cifar100", split)
    if labels not in ("fine", "coarse"):
        raise ValueError(f"cifar100: labels={labels!r}; allowed: fine, coarse")
    folder = Path(root) / CIFAR100_DIR
    files = [folder / f"{split}.bin"]
    ensure_files("cifar100", Path(root), files, download)
    n = 100 if labels == "fine" else 20
    classes = _names(folder / f"{labels}_label_names.txt", [str(i) for i in range(n)])
    return _read(files, 2, 1 if labels == "fine" else 0, classes)
