"""Fashion-MNIST: the idx reader under another name, the system folder, checksums of decompressed bytes."""

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from stsmooth.data import download, registry
from stsmooth.data.download import ChecksumError, Resource, gunzip_digest
from stsmooth.data.mnist import FASHION_CLASSES, FILES
from stsmooth.data.registry import default_root, load

DEBIAN = registry.SYSTEM_ROOTS["fashion_mnist"][0]
HAVE_DEBIAN = all((DEBIAN / f"{n}.gz").is_file() for pair in FILES.values() for n in pair)


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def _write_split(root, prefix, images, labels):
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        (root / f"{name}.gz").write_bytes(gzip.compress(_idx(arr)))


def test_reads_with_class_names(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    _write_split(tmp_path, "t10k", images, np.array([9, 0, 6]))
    s = load("fashion_mnist", tmp_path, "test")
    assert s.images.shape == (3, 1, 28, 28) and torch.equal(s.images[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert s.labels.tolist() == [9, 0, 6]
    assert [s.classes[k] for k in s.labels] == ["Ankle boot", "T-shirt/top", "Shirt"]
    with pytest.raises(ValueError, match="fashion_mnist: unknown split 'val'; allowed: train, test"):
        load("fashion_mnist", tmp_path, "val")


def test_default_root_is_the_system_folder_only_when_complete(tmp_path, monkeypatch):
    system = tmp_path / "usr-share"
    system.mkdir()
    names = [f"{n}.gz" for pair in FILES.values() for n in pair]
    monkeypatch.setitem(registry.SYSTEM_ROOTS, "fashion_mnist", (system, names))
    monkeypatch.setenv("STSMOOTH_DATA", str(tmp_path / "cache"))
    for n in names[:3]:
        (system / n).write_bytes(b"")
    assert default_root("fashion_mnist") == tmp_path / "cache" / "fashion_mnist"  # one file missing
    (system / names[3]).write_bytes(b"")
    assert default_root("fashion_mnist") == system
    assert default_root("mnist") == tmp_path / "cache" / "mnist"  # no system folder for MNIST


def test_download_checks_the_decompressed_bytes(tmp_path, monkeypatch):
    """A re-compressed copy (other gzip bytes, same content) verifies; other content is refused."""
    images = np.full((2, 28, 28), 7, np.uint8)
    content = {"t10k-images-idx3-ubyte.gz": _idx(images), "t10k-labels-idx1-ubyte.gz": _idx(np.array([1, 2]))}
    served = tmp_path / "served"
    served.mkdir()
    for name, raw in content.items():
        # compresslevel 1 and mtime 0: bytes that differ from gzip.compress's defaults
        (served / name).write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
        assert (served / name).read_bytes() != gzip.compress(raw)
    table = tuple(Resource(n, ((served / n).as_uri(),), gunzip_sha256=hashlib.sha256(raw).hexdigest())
                  for n, raw in content.items())
    monkeypatch.setitem(download.RESOURCES, "fashion_mnist", table)
    root = tmp_path / "root"
    s = load("fashion_mnist", root, "test", download=True)
    assert s.labels.tolist() == [1, 2] and int(s.images.sum()) == 7 * 2 * 28 * 28
    # Same name, other content: the download is refused and nothing is kept.
    tampered = _idx(np.array([1, 3]))
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ChecksumError, match=r"expected sha256 [0-9a-f]{64} of the decompressed bytes, got "
                       + hashlib.sha256(tampered).hexdigest()):
        load("fashion_mnist", root, "test", download=True)
    assert not (root / "t10k-labels-idx1-ubyte.gz").exists()
    # Not gzip at all.
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>moved</html>")
    with pytest.raises(ChecksumError, match="decompressed bytes, got no gzip stream"):
        load("fashion_mnist", root, "test", download=True)


def test_resource_table():
    table = {r.filename: r for r in download.RESOURCES["fashion_mnist"]}
    assert sorted(table) == sorted(f"{n}.gz" for pair in FILES.values() for n in pair)
    for r in table.values():
        assert r.urls == ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" + r.filename,)
        assert r.md5 is None and len(r.gunzip_sha256) == 64  # the .gz bytes differ between sources
    assert table["t10k-labels-idx1-ubyte.gz"].gunzip_sha256.startswith("0402a96d")


@pytest.mark.skipif(not HAVE_DEBIAN, reason=f"dataset-fashion-mnist is not installed ({DEBIAN})")
def test_debian_files_match_the_checksums_and_read():
    for r in download.RESOURCES["fashion_mnist"]:
        assert gunzip_digest(DEBIAN / r.filename) == r.gunzip_sha256, r.filename
    train, test = load("fashion_mnist", split="train"), load("fashion_mnist", split="test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes == FASHION_CLASSES


@pytest.mark.skipif(not HAVE_DEBIAN, reason=f"dataset-fashion-mnist is not installed ({DEBIAN})")
def test_supervised_recipe_trains_on_the_real_files(tmp_path):
    """The shipped recipe on the real images: 200 steps of 32 from 1000 labels learn well above chance (10%)."""
    from stsmooth.training import config, train

    cfg = config.load(config.recipe_path("supervised_fashion"),
                      [f"out={tmp_path}", "data.labels_per_class=100", "optim.epochs=2", "eval.every_epochs=2",
                       "export=false", "teacher.momentum=0.9"])  # a teacher that follows within 200 steps
    assert cfg.data.root is None and cfg.model.name == "fmnist_cnn"  # the Debian folder, found by default
    res = train.run(cfg)
    assert res["labels"] == 1000 and res["steps"] == 200
    assert res["student"]["top1"] > 55 and res["teacher"]["top1"] > 55, res
