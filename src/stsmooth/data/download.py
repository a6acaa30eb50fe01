"""Canonical download addresses, checksums, verified fetching and safe extraction.

Every file comes from the dataset authors' address (or, for MNIST, whose
original host now refuses scripted downloads, the mirror that PyTorch uses),
is streamed to a temporary file next to its destination while its digest is
computed, is verified against the checksum below, and only then is renamed
into place (``os.replace`` is atomic on one file system), so an interrupted or
corrupted download never leaves a file that looks complete. Archives are
extracted member by member after a path-traversal check, into a temporary
folder first.

Where the checksums come from (each value was checked against our own notes
and against several independent copies in public code):
    * CIFAR-10 / CIFAR-100 binary: md5 published by the authors on
      https://www.cs.toronto.edu/~kriz/cifar.html.
    * MNIST: the authors' page publishes no checksum; the md5 values are the
      ones used by PyTorch/torchvision and many others for the original
      ``*.gz`` files (identical bytes on the ossci-datasets mirror).
    * SVHN: the authors' page publishes no checksum; the md5 values are the
      ones torchvision uses for the three ``*_32x32.mat`` files.
    * STL-10: the authors' page publishes no checksum; the md5 of
      ``stl10_binary.tar.gz`` is the one torchvision uses.
    * Fashion-MNIST: the authors publish md5s of the ``*.gz`` files
      (zalandoresearch/fashion-mnist README), but Debian's
      ``dataset-fashion-mnist`` recompresses them, so what is checked is the
      sha256 of the *decompressed* idx bytes (``gunzip_sha256``), computed
      from the Debian files and equal for the authors' ``.gz`` files: both
      sources verify, and a recompressed mirror would too.
An archive or file placed by hand is not re-hashed (STL-10 is 2.5 GB); the
readers check its structure instead.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from stsmooth.errors import StsmoothError

# Looked up at call time so that tests can substitute a local opener.
urlopen = urllib.request.urlopen

CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One downloadable file of a dataset.

    Attributes:
        filename: name of the file under the dataset root.
        urls: addresses tried in order (mirrors).
        md5: expected md5 hex digest, or None.
        sha256: expected sha256 hex digest, or None.
        archive: True for a tar archive that is extracted into the root.
        gunzip_sha256: expected sha256 of the gzip file's decompressed bytes, or None.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    archive: bool = False
    gunzip_sha256: str | None = None


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_SVHN = "http://ufldl.stanford.edu/housenumbers/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": tuple(
        Resource(f, tuple(m + f for m in _MNIST_MIRRORS), md5)
        for f, md5 in (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        )
    ),
    # sha256 of the decompressed idx files (sizes 47,040,016 / 60,008 / 7,840,016 / 10,008 bytes);
    # the authors' md5s of the .gz files are 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
    # 25c81989df183df01b3e8a0aad5dffbe, bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310.
    "fashion_mnist": tuple(
        Resource(f, (_FASHION + f,), gunzip_sha256=digest)
        for f, digest in (
            ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        )
    ),
    "cifar10": (
        Resource(
            "cifar-10-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            md5="c32a1d4ab5d03f1284b67883e8d87530",
            archive=True,
        ),
    ),
    "cifar100": (
        Resource(
            "cifar-100-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
            md5="03b5dce01913d631647c71ecec9e9cb8",
            archive=True,
        ),
    ),
    "svhn": tuple(
        Resource(f, (_SVHN + f,), md5)
        for f, md5 in (
            ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
            ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
        )
    ),
    "stl10": (
        Resource(
            "stl10_binary.tar.gz",
            ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
            md5="91f7769df0f17e558f3565bffb0c7dfb",
            archive=True,
        ),
    ),
}


class ChecksumError(ValueError):
    """A downloaded file's digest differs from the published one."""


class DownloadError(StsmoothError, OSError):
    """No address of a resource could be fetched (no network, a proxy, a moved file): one line, exit 2."""


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def gunzip_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a gzip file's decompressed bytes, streamed in 1 MiB chunks.

    Raises:
        ValueError: ``path`` is not a complete gzip stream.
    """
    h = hashlib.new(algorithm, usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot decompress ({e}); not a complete gzip file") from e
    return h.hexdigest()


def fetch(url: str, dest: str | os.PathLike, md5: str | None = None, sha256: str | None = None, timeout: float = 60.0,
          gunzip_sha256: str | None = None) -> Path:
    """Streams ``url`` to ``dest``, verifying its checksum before it appears there.

    Args:
        url: any address ``urllib`` opens (``https://``, ``http://``, ``file://``).
        dest: final path; its folder is created.
        md5: expected md5 hex digest (checked when given).
        sha256: expected sha256 hex digest (checked when given).
        timeout: socket timeout in seconds.
        gunzip_sha256: expected sha256 of the decompressed bytes of a gzip file
            (checked when given; independent of how the file was compressed).

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: digest mismatch (nothing is left at ``dest``).
        DownloadError: the address could not be read.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name, want in (("md5", md5), ("sha256", sha256)) if want}
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urlopen(url, timeout=timeout) as response:
                    total = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
                    bar = tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=dest.name, disable=None, leave=False)
                    with bar:
                        for chunk in iter(lambda: response.read(CHUNK), b""):
                            out.write(chunk)
                            for h in hashes.values():
                                h.update(chunk)
                            bar.update(len(chunk))
            except OSError as e:  # URLError, HTTPError, socket errors are all OSError
                reason = getattr(e, "reason", None) or e
                raise DownloadError(f"could not download {url}: {str(reason).splitlines()[0] if str(reason) else type(e).__name__}") from e
        for name, want in (("md5", md5), ("sha256", sha256)):
            if want and hashes[name].hexdigest() != want.lower():
                raise ChecksumError(
                    f"checksum mismatch for {url}: expected {name} {want.lower()}, got {hashes[name].hexdigest()}; the file was not kept"
                )
        if gunzip_sha256:
            try:
                got = gunzip_digest(tmp)
            except ValueError:
                got = "no gzip stream"
            if got != gunzip_sha256.lower():
                raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {gunzip_sha256.lower()} of the "
                                    f"decompressed bytes, got {got}; the file was not kept")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a dataset file is meant to be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def fetch_resource(res: Resource, root: str | os.PathLike) -> Path:
    """Fetches ``res`` into ``root``, trying each mirror in turn.

    Raises:
        ChecksumError: some mirror served wrong bytes and none served right ones.
        DownloadError: no mirror could be read. Either message, one line, lists
            every mirror's failure and where to put the file by hand.
    """
    errors: list[Exception] = []
    for url in res.urls:
        try:
            return fetch(url, Path(root) / res.filename, md5=res.md5, sha256=res.sha256, gunzip_sha256=res.gunzip_sha256)
        except (ChecksumError, DownloadError) as e:
            errors.append(e)
    kind = ChecksumError if any(isinstance(e, ChecksumError) for e in errors) else DownloadError
    raise kind("; ".join(str(e) for e in errors) + f" (place {res.filename} in {root} by hand to skip the download)")


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    p = PurePosixPath(m.name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise ValueError(f"{archive}: refusing to extract member {m.name!r} (absolute path or '..')")
    if not (m.isfile() or m.isdir()):
        raise ValueError(f"{archive}: refusing to extract member {m.name!r} (links and special files are not allowed)")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extracts a tar archive (any compression) into ``dest`` without leaving it.

    Members with absolute paths, ``..`` components, links or device files are
    refused before anything is written. Members are unpacked into a temporary
    folder inside ``dest`` and moved into place file by file afterwards, so a
    corrupt archive leaves no partial files behind.

    Returns:
        Paths of the extracted regular files.

    Raises:
        ValueError: unreadable/truncated archive or an unsafe member (naming it).
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for m in members:
                    _check_member(m, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second guard
                    tar.extractall(tmp, members=members, filter="data")
                else:
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ValueError(f"{archive}: cannot extract ({type(e).__name__}: {e}); the archive is truncated or corrupt, delete it and fetch it again") from e
        out = []
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            target = dest / src.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, target)
            out.append(target)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def missing_file_message(dataset: str, path: Path, root: Path) -> str:
    """The one line shown when a dataset file is absent and was not fetched."""
    resources = RESOURCES.get(dataset, ())
    source = next((r for r in resources if r.filename == path.name), None) or next((r for r in resources if r.archive), None)
    how = f"pass download=True, or fetch {source.urls[0]} into {root}" if source else "check the root folder"
    return f"{dataset}: missing file {path.name} (expected at {path}); {how}"


def ensure_files(dataset: str, root: str | os.PathLike, wanted: list[Path], download: bool) -> None:
    """Makes sure every path in ``wanted`` exists, fetching/extracting if needed.

    For an archive dataset (CIFAR, STL-10) the archive found in ``root`` is
    extracted when a wanted file is missing; with ``download=True`` it is
    fetched first. For plain-file datasets (MNIST, Fashion-MNIST, SVHN) each missing file is
    fetched by name.

    Raises:
        FileNotFoundError: a file is missing and ``download`` is False (one line).
        ChecksumError / DownloadError: the fetch failed.
        ValueError: the archive is corrupt or lacks a wanted file.
    """
    root = Path(root)
    missing = [p for p in wanted if not p.exists()]
    if not missing:
        return
    resources = RESOURCES.get(dataset, ())
    archive = next((r for r in resources if r.archive), None)
    if archive is not None:
        path = root / archive.filename
        if not path.exists():
            if not download:
                raise FileNotFoundError(missing_file_message(dataset, missing[0], root) + f" (archive {archive.filename} not found either)")
            fetch_resource(archive, root)
        safe_extract(path, root)
        still = [p for p in wanted if not p.exists()]
        if still:
            raise ValueError(f"{dataset}: archive {path} has no member {still[0].relative_to(root)}; it is not the expected archive")
        return
    by_name = {r.filename: r for r in resources}
    for p in missing:
        if not download or p.name not in by_name:
            raise FileNotFoundError(missing_file_message(dataset, p, root))
        fetch_resource(by_name[p.name], p.parent)
