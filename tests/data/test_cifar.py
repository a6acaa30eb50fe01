import io
import tarfile

import numpy as np
import pytest
import torch

from stsmooth.data.cifar import read_records
from stsmooth.data.registry import load


def _records(rng, n, labels_per_record, num_classes):
    labels = rng.integers(0, num_classes, (n, labels_per_record), dtype=np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    raw = np.concatenate([labels, images.reshape(n, -1)], axis=1).tobytes()
    return raw, images, labels


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar10(root, n=5, seed=0):
    """A CIFAR-10 binary archive with n records per batch file; returns {file: (images, labels)}."""
    rng = np.random.default_rng(seed)
    members, truth = {}, {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        raw, images, labels = _records(rng, n, 1, 10)
        members[f"cifar-10-batches-bin/{name}"] = raw
        truth[name] = (images, labels[:, 0])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    _tar(root / "cifar-10-binary.tar.gz", members)
    return truth


def test_cifar10_from_archive(tmp_path):
    truth = write_cifar10(tmp_path)
    train = load("cifar10", tmp_path, "train")  # extracts the archive found in root
    assert train.images.shape == (25, 3, 32, 32) and train.images.dtype == torch.uint8
    exp_images = np.concatenate([truth[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    exp_labels = np.concatenate([truth[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(exp_images))
    assert train.labels.tolist() == exp_labels.tolist()
    assert train.classes[0] == "airplane" and train.num_classes == 10
    assert (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").exists()
    test = load("cifar10", tmp_path, "test")
    assert torch.equal(test.images, torch.from_numpy(truth["test_batch.bin"][0]))
    # pixel layout: record bytes are R plane, G plane, B plane, each row-major
    raw = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert test.images[0, 1, 2, 3] == raw[1 + 1024 + 2 * 32 + 3]


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    raw, images, labels = _records(rng, 5, 2, 20)
    labels[:, 1] = [0, 99, 50, 7, 42]
    raw = np.concatenate([labels, images.reshape(5, -1)], axis=1).tobytes()
    _tar(tmp_path / "cifar-100-binary.tar.gz", {"cifar-100-binary/train.bin": raw, "cifar-100-binary/test.bin": raw[: 2 * 3074]})
    fine = load("cifar100", tmp_path)
    assert fine.labels.tolist() == [0, 99, 50, 7, 42] and fine.num_classes == 100
    assert torch.equal(fine.images, torch.from_numpy(images))
    coarse = load("cifar100", tmp_path, labels="coarse")
    assert coarse.labels.tolist() == labels[:, 0].tolist() and coarse.num_classes == 20
    assert len(load("cifar100", tmp_path, "test")) == 2
    with pytest.raises(ValueError, match="labels='medium'"):
        load("cifar100", tmp_path, labels="medium")


def test_truncated_record(tmp_path):
    write_cifar10(tmp_path)
    load("cifar10", tmp_path, "test")
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"test_batch.bin: 15364 bytes is not a positive multiple of the 3073-byte CIFAR record"):
        load("cifar10", tmp_path, "test")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="0 bytes"):
        load("cifar10", tmp_path, "test")


def test_label_out_of_range(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(ValueError, match=r"x.bin: label 12 outside 0..9"):
        read_records(path, 1, 0, 10)


def test_corrupt_archive(tmp_path):
    write_cifar10(tmp_path)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(ValueError, match="cifar-10-binary.tar.gz: cannot extract"):
        load("cifar10", tmp_path)
    assert not (tmp_path / "cifar-10-batches-bin").exists()  # nothing half-extracted


def test_archive_without_expected_member(tmp_path):
    _tar(tmp_path / "cifar-10-binary.tar.gz", {"other/readme.txt": b"hi"})
    with pytest.raises(ValueError, match="has no member cifar-10-batches-bin/data_batch_1.bin"):
        load("cifar10", tmp_path)


def test_missing_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load("cifar100", tmp_path, "test")
    msg = str(e.value)
    assert "\n" not in msg and "test.bin" in msg and str(tmp_path / "cifar-100-binary" / "test.bin") in msg
    assert "download=True" in msg and "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz" in msg
