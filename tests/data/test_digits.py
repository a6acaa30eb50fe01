import numpy as np
import torch
from sklearn.datasets import load_digits

from stsmooth.data import digits
from stsmooth.data.registry import load


def test_shapes_values_and_counts():
    train, test = load("digits"), load("digits", split="test")
    assert train.images.shape == (1500, 1, 8, 8) and test.images.shape == (297, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == [str(i) for i in range(10)]
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # stratified: every class keeps 16-17 % of its images in the test split
    counts = torch.bincount(test.labels, minlength=10)
    total = torch.bincount(train.labels, minlength=10) + counts
    assert total.sum() == 1797
    assert torch.all((counts - total.double() * 297 / 1797).abs() < 1)


def test_split_is_disjoint_and_complete():
    raw = load_digits()
    full = load("digits", split="all")
    assert torch.equal(full.labels, torch.from_numpy(raw.target).long())
    expected = torch.from_numpy(np.rint(raw.images * 255 / 16).astype(np.uint8))[:, None]
    assert torch.equal(full.images, expected)
    held = digits.heldout_indices(raw.target)
    assert len(held) == 297 and len(np.unique(held)) == 297
    mask = np.zeros(1797, bool)
    mask[held] = True
    assert torch.equal(load("digits", split="test").images, full.images[torch.from_numpy(mask)])
    assert torch.equal(load("digits", split="train").images, full.images[torch.from_numpy(~mask)])


def test_split_is_fixed():
    a, b = load("digits", split="test"), load("digits", split="test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # pinned: the split must never change between versions
    held = digits.heldout_indices(load_digits().target)
    assert held[:8].tolist() == PINNED_FIRST and int(held.sum()) == PINNED_SUM


PINNED_FIRST = [3, 7, 13, 19, 36, 43, 48, 53]
PINNED_SUM = 256199
