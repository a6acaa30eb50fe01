"""``load(name, ...)``: one entry point for every dataset reader, and ``loader_for`` any set it returns.

In-memory datasets come back as an :class:`ImageSet`; ``"folder"`` comes back
as a :class:`FolderSet` that streams from disk. ``root=None`` means
``$STSMOOTH_DATA/<name>``, or ``~/.cache/stsmooth/datasets/<name>`` when the
variable is unset (``digits`` needs no root; ``npz`` and ``folder`` require one).
A data set that a system package installs (Debian's ``dataset-fashion-mnist``)
is read from the package's folder when every file is there.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from stsmooth.data import cifar, digits, mnist, npz, stl10, svhn
from stsmooth.data.folder import FolderLoader, FolderSet
from stsmooth.data.imageset import ImageSet
from stsmooth.data.loader import DeviceLoader

_READERS = {
    "digits": (digits.read, digits.SPLITS),
    "mnist": (mnist.read, mnist.SPLITS),
    "fashion_mnist": (mnist.read_fashion, mnist.SPLITS),
    "cifar10": (cifar.read_cifar10, cifar.SPLITS),
    "cifar100": (cifar.read_cifar100, cifar.SPLITS),
    "svhn": (svhn.read, svhn.SPLITS),
    "stl10": (stl10.read, stl10.SPLITS),
    "npz": (npz.read, None),
}
_NEEDS_ROOT = ("npz", "folder")
#: Folders where a system package installs a data set, and the files that must all be there.
SYSTEM_ROOTS = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),
                      [f"{name}.gz" for pair in mnist.FILES.values() for name in pair]),
}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted([*_READERS, "folder"])


def split_names(name: str) -> tuple[str, ...] | None:
    """The splits of a named dataset (None for npz/folder, whose splits are files/folders)."""
    _check_name(name)
    return _READERS[name][1] if name in _READERS else None


def default_root(name: str) -> Path:
    """Where ``name`` is looked for when ``root`` is None: a system package's folder, else the cache."""
    if name in SYSTEM_ROOTS:
        folder, files = SYSTEM_ROOTS[name]
        if all((folder / f).is_file() for f in files):
            return folder
    base = os.environ.get("STSMOOTH_DATA") or "~/.cache/stsmooth/datasets"
    return Path(base).expanduser() / name


def _check_name(name: str) -> None:
    if name not in _READERS and name != "folder":
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(names())}")


def load(name: str, root=None, split: str = "train", download: bool = False, **options):
    """Reads one split of a dataset.

    Args:
        name: one of :func:`names` ("digits", "mnist", "fashion_mnist", "cifar10",
            "cifar100", "svhn", "stl10", "npz", "folder").
        root: dataset folder (npz: a ``.npz`` file or a folder of
            ``<split>.npz``); None -> :func:`default_root`.
        split: e.g. "train"/"test"; SVHN also "extra", STL-10 "unlabeled",
            digits "all", folder "train"/"val".
        download: fetch missing files from the canonical address and verify
            their checksum (mnist, fashion_mnist, cifar10, cifar100, svhn, stl10).
        **options: reader options, e.g. ``labels="coarse"`` for cifar100,
            ``size=224`` / ``mode="L"`` for folder.

    Returns:
        ImageSet (uint8 images (N, C, H, W), int64 labels) or, for "folder", a FolderSet.
    """
    _check_name(name)
    if root is None:
        if name in _NEEDS_ROOT:
            raise ValueError(f"{name}: root is required (a {'.npz file or folder' if name == 'npz' else 'folder <root>/<class>/<image>'})")
        root = default_root(name)
    if name == "folder":
        if download:
            raise ValueError("folder: download=True is not possible for your own files")
        return FolderSet(root, split=split, **options)
    reader, allowed = _READERS[name]
    if allowed is not None and split not in allowed:
        raise ValueError(f"{name}: unknown split {split!r}; allowed: {', '.join(allowed)}")
    extra = sorted(set(options) - set(inspect.signature(reader).parameters) | set(options) & {"root", "split", "download"})
    if extra:
        known = [p for p in inspect.signature(reader).parameters if p not in ("root", "split", "download")]
        raise ValueError(f"{name}: unknown option {extra[0]!r}; allowed: {', '.join(known) or 'none'}")
    return reader(root, split=split, download=download, **options)


def loader_for(data: ImageSet | FolderSet, batch_size: int, *, shuffle: bool = True, drop_last: bool = True,
               seed: int = 0, device="cpu", rank: int = 0, world_size: int = 1, num_workers: int | None = None):
    """The loader of a set :func:`load` returned: a DeviceLoader (ImageSet) or a FolderLoader (FolderSet).

    Both yield ``(images uint8 (B, C, H, W), labels int64 (B,))`` on ``device`` in
    the same order, a pure function of ``(seed, epoch)`` and the shard
    ``(rank, world_size)``; ``num_workers`` (decoding processes) only applies to folders.

    Raises:
        ValueError: ``data`` is neither an ImageSet nor a FolderSet.
    """
    if isinstance(data, ImageSet):
        return DeviceLoader(data, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed, device=device,
                            rank=rank, world_size=world_size)
    if isinstance(data, FolderSet):
        return FolderLoader(data, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed, device=device,
                            num_workers=num_workers, rank=rank, world_size=world_size)
    raise ValueError(f"loader_for needs an ImageSet or a FolderSet; got {type(data).__name__}")
