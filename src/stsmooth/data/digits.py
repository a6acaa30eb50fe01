"""scikit-learn's bundled 8×8 handwritten digits: the embedded default dataset.

It ships inside scikit-learn (1,797 images, 10 classes), so it needs no
download; the README's main command and the tests train on it (a CPU-sized
stand-in for the papers' CIFAR experiments, paper 000 §4.5).

The train/test split is fixed: a stratified 1,500/297 split drawn once per
class with ``numpy.random.RandomState(0)`` (whose stream NumPy keeps frozen
across versions, NEP 19). Each class gives ``round(n_c * 297 / 1797)`` test
images, corrected by largest remainder so that the test set has exactly 297.
Pixel values 0..16 are scaled to 0..255 as ``round(v * 255 / 16)``.
"""

from __future__ import annotations

import numpy as np
import torch

from stsmooth.data.imageset import ImageSet

SPLITS = ("train", "test", "all")
NUM_TEST = 297
SPLIT_SEED = 0
CLASSES = [str(i) for i in range(10)]


def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def heldout_indices(labels: np.ndarray, num_test: int = NUM_TEST, seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted indices of the fixed stratified test split.

    Args:
        labels: int array (N,) of class ids.
        num_test: size of the test split.
        seed: RandomState seed.

    Returns:
        int64 array (num_test,) of indices into ``labels``.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / len(labels)
    take = np.floor(exact).astype(np.int64)
    # largest remainder: the classes with the biggest fractional parts get one more
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: num_test - int(take.sum())]] += 1
    rs = np.random.RandomState(seed)
    picked = [rs.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def read(root=None, split: str = "train", download: bool = False) -> ImageSet:
    """The digits split as an ImageSet of 1×8×8 uint8 images.

    Args:
        root: ignored (the data is bundled with scikit-learn).
        split: "train" (1,500), "test" (297) or "all" (1,797).
        download: ignored.

    Returns:
        ImageSet with images (N, 1, 8, 8) uint8 in 0..255 and labels (N,).
    """
    if split not in SPLITS:
        raise ValueError(f"digits: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    images, labels = _raw()
    if split != "all":
        test = heldout_indices(labels)
        mask = np.zeros(len(labels), dtype=bool)
        mask[test] = True
        keep = mask if split == "test" else ~mask
        images, labels = images[keep], labels[keep]
    pixels = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return ImageSet(torch.from_numpy(pixels[:, None]).contiguous(), torch.from_numpy(labels.astype(np.int64)), list(CLASSES))
