import numpy as np
import pytest
import torch

from stsmooth.data.registry import load
from stsmooth.data.stl10 import read_folds


def _write_x(path, images):
    # planes column-major (MATLAB order): store each (96, 96) plane transposed
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


@pytest.fixture
def stl_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    train = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    unl = rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    _write_x(folder / "train_X.bin", train)
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))
    _write_x(folder / "test_X.bin", test)
    (folder / "test_y.bin").write_bytes(bytes([2, 3]))
    _write_x(folder / "unlabeled_X.bin", unl)
    (folder / "fold_indices.txt").write_text("0 2\n1\n")
    return tmp_path, train, test, unl


def test_splits_and_layout(stl_root):
    root, train, test, unl = stl_root
    s = load("stl10", root)
    assert s.images.shape == (3, 3, 96, 96) and s.images.dtype == torch.uint8 and s.images.is_contiguous()
    assert torch.equal(s.images, torch.from_numpy(train))
    assert s.labels.tolist() == [0, 9, 3] and s.classes[7] == "monkey"
    t = load("stl10", root, "test")
    assert torch.equal(t.images, torch.from_numpy(test)) and t.labels.tolist() == [1, 2]
    u = load("stl10", root, "unlabeled")
    assert torch.equal(u.images, torch.from_numpy(unl)) and (u.labels == -1).all() and u.num_classes == 10
    # column-major: byte k of a plane is pixel (row k % 96, column k // 96)
    raw = (root / "stl10_binary" / "train_X.bin").read_bytes()
    assert s.images[0, 0, 5, 1] == raw[1 * 96 + 5]
    assert [f.tolist() for f in read_folds(root)] == [[0, 2], [1]]


def test_truncated_and_bad_labels(stl_root):
    root = stl_root[0]
    x = root / "stl10_binary" / "train_X.bin"
    x.write_bytes(x.read_bytes()[:-5])
    with pytest.raises(ValueError, match="train_X.bin: 82939 bytes is not a positive multiple of the 27648-byte"):
        load("stl10", root)
    (root / "stl10_binary" / "test_y.bin").write_bytes(bytes([2]))
    with pytest.raises(ValueError, match="test_y.bin: 1 labels but the images file has 2"):
        load("stl10", root, "test")
    (root / "stl10_binary" / "test_y.bin").write_bytes(bytes([0, 3]))
    with pytest.raises(ValueError, match="test_y.bin: labels span 0..3; expected 1..10"):
        load("stl10", root, "test")


def test_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load("stl10", tmp_path, "unlabeled")
    msg = str(e.value)
    assert "\n" not in msg and "unlabeled_X.bin" in msg and str(tmp_path / "stl10_binary") in msg
    assert "stl10_binary.tar.gz" in msg and "download=True" in msg
