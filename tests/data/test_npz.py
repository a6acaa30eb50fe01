import numpy as np
import pytest
import torch

from stsmooth.data.registry import load


def test_gray_and_channels_last(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", images=gray, labels=np.array([0, 1, 2, 1]))
    s = load("npz", tmp_path)
    assert s.images.shape == (4, 1, 5, 6) and torch.equal(s.images[:, 0], torch.from_numpy(gray))
    assert s.classes == ["0", "1", "2"] and s.labels.dtype == torch.int64

    rgb = rng.integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "test.npz", images=rgb, labels=np.array([1, -1, 0], np.int32), classes=np.array(["cat", "dog"]))
    t = load("npz", tmp_path, "test")
    assert t.images.shape == (3, 3, 5, 6) and t.images.is_contiguous()
    assert int(t.images[2, 1, 3, 4]) == int(rgb[2, 3, 4, 1])
    assert t.classes == ["cat", "dog"] and t.labels.tolist() == [1, -1, 0]
    # root may be the file itself
    assert len(load("npz", tmp_path / "test.npz", split="ignored")) == 3


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((2, 4, 4), np.uint8)}, "no array 'labels' \\(has: images\\)"),
        ({"images": np.zeros((2, 4, 4), np.float32), "labels": np.zeros(2, int)}, "images is float32 \\(2, 4, 4\\); expected uint8"),
        ({"images": np.zeros((2, 4), np.uint8), "labels": np.zeros(2, int)}, "images is uint8 \\(2, 4\\); expected uint8 \\(N, H, W\\)"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2)}, "labels is float64"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, int)}, "2 images but 3 labels"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 2]), "classes": np.array(["a", "b"])}, "labels span 0..2; allowed -1..1"),
    ],
)
def test_bad_contents(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=f"d.npz: {match}"):
        load("npz", tmp_path / "d.npz")


def test_object_array_is_not_unpickled(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((1, 2, 2), np.uint8), labels=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="d.npz: cannot read as .npz"):
        load("npz", tmp_path / "d.npz")


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="train.npz: cannot read as .npz"):
        load("npz", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"npz: missing file test.npz \(expected at .*test.npz\)"):
        load("npz", tmp_path, "test")
    with pytest.raises(ValueError, match="npz: root is required"):
        load("npz")
