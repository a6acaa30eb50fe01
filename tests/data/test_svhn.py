import numpy as np
import pytest
import scipy.io
import torch

from stsmooth.data.registry import load


def _write(path, n=4, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = np.array(labels if labels is not None else [10, 1, 5, 9][:n], dtype=np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def test_reads_all_splits(tmp_path):
    x, _ = _write(tmp_path / "train_32x32.mat")
    _write(tmp_path / "test_32x32.mat", n=2, seed=1)
    _write(tmp_path / "extra_32x32.mat", n=3, seed=2)
    s = load("svhn", tmp_path)
    assert s.images.shape == (4, 3, 32, 32) and s.images.dtype == torch.uint8
    assert s.labels.tolist() == [0, 1, 5, 9]  # 10 stands for the digit 0
    # X is (H, W, C, N): images[n, c, h, w] == X[h, w, c, n]
    assert torch.equal(s.images[2], torch.from_numpy(x[:, :, :, 2].transpose(2, 0, 1).copy()))
    assert int(s.images[1, 2, 3, 4]) == int(x[3, 4, 2, 1])
    assert len(load("svhn", tmp_path, "test")) == 2 and len(load("svhn", tmp_path, "extra")) == 3


def test_bad_files(tmp_path):
    p = tmp_path / "train_32x32.mat"
    p.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(ValueError, match="train_32x32.mat: cannot read as a MATLAB v5 file"):
        load("svhn", tmp_path)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(ValueError, match="train_32x32.mat: no variable 'y'"):
        load("svhn", tmp_path)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.ones((2, 1))})
    with pytest.raises(ValueError, match=r"X is float64 \(32, 32, 3, 2\); expected uint8"):
        load("svhn", tmp_path)
    _write(p, n=2, labels=[1, 11])
    with pytest.raises(ValueError, match="labels span 1..11"):
        load("svhn", tmp_path)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))})
    with pytest.raises(ValueError, match="2 images but y has 3 labels"):
        load("svhn", tmp_path)


def test_missing_message_and_split(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load("svhn", tmp_path, "extra")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "extra_32x32.mat") in msg
    assert "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat" in msg and "download=True" in msg
    with pytest.raises(ValueError, match="svhn: unknown split 'unlabeled'; allowed: train, test, extra"):
        load("svhn", tmp_path, "unlabeled")
