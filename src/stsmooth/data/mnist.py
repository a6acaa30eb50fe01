"""MNIST and Fashion-MNIST from their original idx files (gzip-compressed or raw).

Layout of an idx file (LeCun et al., http://yann.lecun.com/exdb/mnist/): a
4-byte magic ``00 00 TT DD`` (TT = element type, 0x08 = unsigned byte; DD =
number of dimensions), then DD big-endian int32 sizes, then the elements in
row-major order. Images are idx3 (N, 28, 28), labels idx1 (N,).

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence; 70,000 28×28 grey
product photos in 10 classes) ships in exactly this format under the same four
file names, so one reader serves both.

Files are looked up as ``<root>/<name>`` then ``<root>/<name>.gz``; with
``download=True`` the ``.gz`` files are fetched and verified
(:mod:`stsmooth.data.download`).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from stsmooth.data.download import ensure_files
from stsmooth.data.imageset import ImageSet

SPLITS = ("train", "test")
CLASSES = [str(i) for i in range(10)]
#: Fashion-MNIST's label names, in label order (zalandoresearch/fashion-mnist README).
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Reads an unsigned-byte idx file (``.gz`` is decompressed).

    Args:
        path: the idx file.
        ndim: number of dimensions it must have (3 for images, 1 for labels).

    Returns:
        uint8 array of the stored shape.

    Raises:
        ValueError: wrong magic, element type or dimension count, or a length
            that does not match the header (naming the file).
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot decompress ({e}); the file is truncated or corrupt") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (magic {raw[:4].hex() or 'empty'}, expected 0000{_UBYTE:02x}{ndim:02x})")
    if raw[2] != _UBYTE or raw[3] != ndim:
        raise ValueError(f"{path}: idx magic {raw[:4].hex()} has type 0x{raw[2]:02x} and {raw[3]} dims; expected 0000{_UBYTE:02x}{ndim:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: idx header truncated ({len(raw)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes but the header's shape {shape} needs {expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _locate(root: Path, name: str, download: bool, dataset: str) -> Path:
    for p in (root / name, root / f"{name}.gz"):
        if p.exists():
            return p
    gz = root / f"{name}.gz"
    ensure_files(dataset, root, [gz], download)
    return gz


def _read(root, split: str, download: bool, dataset: str, classes: list[str]) -> ImageSet:
    if split not in SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(root)
    img_path, lab_path = (_locate(root, f, download, dataset) for f in FILES[split])
    images, labels = read_idx(img_path, 3), read_idx(lab_path, 1)
    if len(images) != len(labels):
        raise ValueError(f"{dataset}: {img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lab_path}: label {int(labels.max())} outside 0..9; the file is corrupt")
    return ImageSet(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64)), list(classes))


def read(root, split: str = "train", download: bool = False) -> ImageSet:
    """MNIST ``split`` as 1×28×28 uint8 images.

    Args:
        root: folder holding the four idx files.
        split: "train" (60,000) or "test" (10,000).
        download: fetch missing files from the canonical address.

    Returns:
        ImageSet with images (N, 1, 28, 28) and labels (N,).
    """
    return _read(root, split, download, "mnist", CLASSES)


def read_fashion(root, split: str = "train", download: bool = False) -> ImageSet:
    """Fashion-MNIST ``split`` as 1×28×28 uint8 images (classes named as in its README).

    Args:
        root: folder holding the four idx files (Debian's ``dataset-fashion-mnist``
            installs them in ``/usr/share/datasets/fashion-mnist``).
        split: "train" (60,000) or "test" (10,000).
        download: fetch missing files from the canonical address; their
            decompressed bytes are checked against sha256 values
            (:data:`stsmooth.data.download.RESOURCES`).

    Returns:
        ImageSet with images (N, 1, 28, 28) and labels (N,).
    """
    return _read(root, split, download, "fashion_mnist", FASHION_CLASSES)
