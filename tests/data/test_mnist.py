import gzip
import struct

import numpy as np
import pytest
import torch

from stsmooth.data.mnist import read_idx
from stsmooth.data.registry import load


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def _write(root, prefix, images, labels, gz=True):
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = _idx(arr)
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)


@pytest.fixture
def mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write(tmp_path, "train", images, labels, gz=True)
    _write(tmp_path, "t10k", images[:2], labels[:2], gz=False)  # raw (already unpacked) files work too
    return tmp_path, images, labels


def test_reads_gz_and_raw(mnist_root):
    root, images, labels = mnist_root
    train = load("mnist", root, "train")
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[:, 0], torch.from_numpy(images))
    assert train.labels.tolist() == [3, 1, 4, 1, 5] and train.num_classes == 10
    test = load("mnist", root, "test")
    assert torch.equal(test.images[:, 0], torch.from_numpy(images[:2]))


def test_bad_magic(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 1) + struct.pack(">i", 2) + b"\x01\x02")
    with pytest.raises(ValueError, match=r"x: idx magic 00000801 .* expected 00000803"):
        read_idx(p, 3)
    p.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(p, 1)


def test_truncated_and_corrupt(mnist_root):
    root = mnist_root[0]
    path = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: .* bytes but the header's shape \(5, 28, 28\)"):
        load("mnist", root)
    path.write_bytes(gzip.compress(raw)[:40])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: cannot decompress"):
        load("mnist", root)


def test_count_mismatch_and_bad_label(tmp_path):
    _write(tmp_path, "train", np.zeros((3, 4, 4), np.uint8), np.array([1, 2], np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        load("mnist", tmp_path)
    _write(tmp_path, "train", np.zeros((2, 4, 4), np.uint8), np.array([1, 12], np.uint8))
    with pytest.raises(ValueError, match="label 12 outside 0..9"):
        load("mnist", tmp_path)


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load("mnist", tmp_path, "test")
    msg = str(e.value)
    assert "\n" not in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg
    assert "download=True" in msg and "https://" in msg
