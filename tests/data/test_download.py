"""Download, verification and extraction, against local files only (no network)."""

import hashlib
import io
import tarfile
import urllib.error

import numpy as np
import pytest
import torch

from stsmooth.data import download
from stsmooth.data.download import (
    ChecksumError,
    DownloadError,
    Resource,
    fetch,
    safe_extract,
)
from stsmooth.data.registry import load


def _md5(b):
    return hashlib.md5(b).hexdigest()


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            tar.addfile(m[0], io.BytesIO(m[1]) if len(m) > 1 else None)


def _member(name, data=b"", **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    return (info, data)


def test_fetch_file_url_verifies(tmp_path):
    src = tmp_path / "src.bin"
    payload = bytes(range(256)) * 5000  # > one 1 MiB chunk
    src.write_bytes(payload)
    dest = tmp_path / "out" / "file.bin"
    fetch(src.as_uri(), dest, md5=_md5(payload), sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no temp file left


def test_checksum_mismatch_keeps_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ChecksumError, match=r"checksum mismatch for file://.*src.bin: expected md5 0{32}, got " + _md5(b"tampered")):
        fetch(src.as_uri(), dest, md5="0" * 32)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ChecksumError, match="expected sha256"):
        fetch(src.as_uri(), dest, sha256="f" * 64)


def test_unreachable_and_mirror_fallback(tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match="could not download file://"):
        fetch((tmp_path / "absent").as_uri(), tmp_path / "x")
    good = tmp_path / "good.bin"
    good.write_bytes(b"payload")
    real = download.urlopen
    calls = []

    def opener(url, timeout):
        calls.append(url)
        if "mirror-a" in url:
            raise urllib.error.URLError("Name or service not known")
        return real(good.as_uri(), timeout=timeout)

    monkeypatch.setattr(download, "urlopen", opener)
    res = Resource("f.bin", ("https://mirror-a.invalid/f.bin", "https://mirror-b.invalid/f.bin"), md5=_md5(b"payload"))
    assert download.fetch_resource(res, tmp_path / "r").read_bytes() == b"payload"
    assert calls == list(res.urls)
    bad = Resource("g.bin", ("https://mirror-a.invalid/g.bin",), md5=_md5(b"payload"))
    with pytest.raises(DownloadError, match=r"mirror-a.invalid/g.bin: Name or service not known .*place g.bin in"):
        download.fetch_resource(bad, tmp_path / "r")


def test_load_with_download_end_to_end(tmp_path, monkeypatch):
    """load(..., download=True) fetches the archive, checks its md5, extracts and reads it."""
    rng = np.random.default_rng(0)
    members = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = np.concatenate([rng.integers(0, 10, (5, 1), dtype=np.uint8), rng.integers(0, 256, (5, 3072), dtype=np.uint8)], 1)
        members.append(_member(f"cifar-10-batches-bin/{name}", rec.tobytes()))
    served = tmp_path / "served.tar.gz"
    _tar(served, members)
    root = tmp_path / "root"
    monkeypatch.setitem(download.RESOURCES, "cifar10", (Resource("cifar-10-binary.tar.gz", (served.as_uri(),), md5="1" * 32, archive=True),))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        load("cifar10", root, "test", download=True)
    assert not (root / "cifar-10-binary.tar.gz").exists()
    monkeypatch.setitem(download.RESOURCES, "cifar10", (Resource("cifar-10-binary.tar.gz", (served.as_uri(),), md5=_md5(served.read_bytes()), archive=True),))
    s = load("cifar10", root, "test", download=True)
    assert s.images.shape == (5, 3, 32, 32) and s.images.dtype == torch.uint8
    assert (root / "cifar-10-binary.tar.gz").exists()


def test_plain_file_download(tmp_path, monkeypatch):
    import scipy.io

    served = tmp_path / "served.mat"
    scipy.io.savemat(served, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]], np.uint8)})
    monkeypatch.setitem(download.RESOURCES, "svhn", (Resource("test_32x32.mat", (served.as_uri(),), md5=_md5(served.read_bytes())),))
    s = load("svhn", tmp_path / "root", "test", download=True)
    assert s.labels.tolist() == [0, 3]


@pytest.mark.parametrize(
    "member, why",
    [
        (_member("../evil.txt", b"x"), "absolute path or '..'"),
        (_member("ok/../../evil.txt", b"x"), "absolute path or '..'"),
        (_member("/tmp/evil.txt", b"x"), "absolute path or '..'"),
        (_member("link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "links and special files"),
        (_member("hard", type=tarfile.LNKTYPE, linkname="../outside"), "links and special files"),
        (_member("dev", type=tarfile.CHRTYPE), "links and special files"),
    ],
)
def test_safe_extract_refuses_traversal(tmp_path, member, why):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, [_member("good.txt", b"fine"), member])
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match=f"a.tar.gz: refusing to extract member .*{why}"):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not (dest / "good.txt").exists()
    assert list(dest.iterdir()) == []  # the temporary folder is gone too


def test_safe_extract_ok_and_truncated(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, [_member("d/x.bin", b"1" * 1000), _member("y.txt", b"hello")])
    out = safe_extract(archive, tmp_path / "dest")
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in out) == ["d/x.bin", "y.txt"]
    assert (tmp_path / "dest" / "y.txt").read_bytes() == b"hello"
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(ValueError, match="a.tar.gz: cannot extract .* truncated or corrupt"):
        safe_extract(archive, tmp_path / "dest2")


def test_resource_table():
    for name in ("mnist", "cifar10", "cifar100", "svhn", "stl10"):
        for r in download.RESOURCES[name]:
            assert r.md5 and len(r.md5) == 32 and int(r.md5, 16) >= 0
            assert all(u.startswith(("http://", "https://")) and u.endswith(r.filename) for u in r.urls)
    assert download.RESOURCES["cifar10"][0].md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert download.RESOURCES["cifar100"][0].md5 == "03b5dce01913d631647c71ecec9e9cb8"
    assert download.RESOURCES["stl10"][0].md5 == "91f7769df0f17e558f3565bffb0c7dfb"
    assert download.file_digest is not None
