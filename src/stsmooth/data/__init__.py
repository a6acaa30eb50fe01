"""Datasets: in-memory uint8 sets gathered on the device, streamed folders, splits.

Public API:
    load(name, root=None, split="train", download=False, **options) -> ImageSet | FolderSet
    names(), split_names(name), default_root(name)
    ImageSet(images uint8 (N, C, H, W), labels int64 (N,), classes); to_float(images) -> [0, 1] float32
    DeviceLoader(data, batch_size, shuffle=True, drop_last=True, seed=0, device="cpu")
    FolderSet(root, split=None, size=None, mode="RGB"), FolderLoader(...)
    loader_for(ImageSet | FolderSet, batch_size, ...) -> DeviceLoader | FolderLoader
    splits.split_labeled / save_split / load_split, unlabeled_split_name(name)
    download.fetch / safe_extract / RESOURCES (canonical URLs and checksums)
"""

from stsmooth.data import download, splits
from stsmooth.data.folder import FolderLoader, FolderSet
from stsmooth.data.imageset import UNLABELED, ImageSet, to_float
from stsmooth.data.loader import DeviceLoader, epoch_order
from stsmooth.data.registry import default_root, load, loader_for, names, split_names
from stsmooth.data.splits import (
    load_split,
    save_split,
    split_labeled,
    unlabeled_split_name,
)

__all__ = [
    "UNLABELED",
    "DeviceLoader",
    "FolderLoader",
    "FolderSet",
    "ImageSet",
    "default_root",
    "download",
    "epoch_order",
    "load",
    "loader_for",
    "load_split",
    "names",
    "save_split",
    "split_labeled",
    "split_names",
    "splits",
    "to_float",
    "unlabeled_split_name",
]
