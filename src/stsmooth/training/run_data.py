"""The data of a run: which splits are read, the label split, and the facts the model needs.

Every run reads ``data.train_split`` (e.g. STL-10 "unlabeled") for training,
the labelled "train" split as kNN bank and ``data.test_split`` for queries
and tests. Methods that train on a labeled subset (``kind.labeled_subset``,
the semi-supervised ones) draw a class-balanced labeled subset of the
training split (``data.labels_per_class`` or ``data.label_fraction`` with
``data.split_seed``, 000 Table 6 / 003 §5.3), save it as ``split.json`` in the
run folder, and use the rest (or everything, FixMatch-style) plus an optional
extra split as unlabeled images.

``meta`` holds what is needed to rebuild the model without reading data
(export, evaluation of a checkpoint): channels, classes, image size and the
normalisation statistics.

Image folders (``data.name=folder``) with ``data.image_size`` unset are read at
their images' own size, which must be one square size across the splits the
run reads (else a one-line error names the sizes found); ``data.channels``
unset keeps grayscale folders at one channel. Both are written back into the
run's config, so ``config.yaml`` and the checkpoint show what was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from stsmooth import data as data_mod
from stsmooth.augment import MEAN_STD
from stsmooth.data import FolderSet, ImageSet
from stsmooth.data.folder import probe
from stsmooth.training.config import DataConfig, RunConfig

#: data set -> key of stsmooth.augment.MEAN_STD (folders are ImageNet-like)
STATS_KEY = {"folder": "imagenet"}


Images = ImageSet | FolderSet


@dataclass
class RunData:
    """Sets of one run (ImageSet, or FolderSet for ``data.name=folder``)."""

    train: Images | None = None  # the training split
    labeled: Images | None = None  # labeled subset of it (kind.labeled_subset)
    unlabeled: Images | None = None  # unlabeled images (kind.labeled_subset; None when not needed)
    bank: Images | None = None  # kNN bank (labelled training images)
    test: Images | None = None
    meta: dict = field(default_factory=dict)


#: images of a grayscale folder whose statistics are measured (evenly spaced over the folder)
GRAY_STATS_SAMPLE = 1000


def normalization_stats(name: str, images: torch.Tensor | None) -> tuple[list[float], list[float]]:
    """The data set's per-channel mean/std in [0, 1] units: the published table, else measured."""
    key = STATS_KEY.get(name, name)
    if key in MEAN_STD:
        mean, std = MEAN_STD[key]
        return list(mean), list(std)
    if images is None:
        return [0.5], [0.25]
    return measured_mean_std(images)


def measured_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] units of uint8 ``images`` (N, C, H, W) (the first 10,000)."""
    sample = images[: 10000].float().div(255.0)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _folder_format(d: DataConfig) -> dict:
    """FolderSet ``size``/``mode`` for a data config (size None until the image size is known)."""
    size = (d.decode_size or round(d.image_size * 8 / 7)) if d.image_size else None
    return {"size": size, "mode": "L" if d.channels == 1 else "RGB"}


def _read(cfg: RunConfig, split: str) -> Images:
    d = cfg.data
    options = {**_folder_format(d), "skip_bad_images": d.skip_bad_images} if d.name == "folder" else {}
    return data_mod.load(d.name, root=d.root, split=split, download=d.download, **options)


def fit_folder(cfg: RunConfig, sets: list[FolderSet]) -> list[FolderSet]:
    """Resolves a folder run's unset ``data.image_size``/``decode_size``/``channels`` from its images.

    Only file headers are read (:func:`stsmooth.data.folder.probe`). The values are
    written into ``cfg.data`` in place, so the saved ``config.yaml`` and checkpoint
    name the size and channels that were trained on.

    Args:
        cfg: the RunConfig (``data.name == "folder"``).
        sets: the FolderSets the run reads (train and test splits).

    Returns:
        The sets, decoded at the resolved size and channel count.

    Raises:
        ValueError: ``data.image_size`` unset and the images are not all of one square size.
    """
    d = cfg.data
    if not d.image_size or not d.channels:
        paths = [path for s in sets for path, _ in s.samples]
        found, gray = probe(paths, sizes=not d.image_size, gray=not d.channels)
    if not d.image_size:
        if len(found) > 1:
            listed = ", ".join(f"{w}x{h} ({path})" for (w, h), path in found.items())
            raise ValueError(f"folder {d.root}: images of different sizes (width x height) {listed}; set "
                             f"data.image_size=S to read them all as SxS crops")
        (w, h), path = next(iter(found.items()))
        if w != h:
            raise ValueError(f"folder {d.root}: the images are {w}x{h} (width x height), not square; set "
                             f"data.image_size=S to read them as SxS crops")
        d.image_size = w
        d.decode_size = d.decode_size or w  # the images' own pixels, not an upscaled copy
    if not d.channels:
        d.channels = 1 if gray else 3
    return [s.reformat(**_folder_format(d)) for s in sets]


def _folder_mean_std(d: DataConfig, train: FolderSet) -> tuple[list[float], list[float]]:
    """ImageNet's table for RGB folders; measured on an even sample for grayscale ones."""
    if d.channels != 1:
        return normalization_stats("folder", None)
    idx = torch.linspace(0, len(train) - 1, min(len(train), GRAY_STATS_SAMPLE)).round().long().unique()
    return measured_mean_std(train.subset(idx).to_imageset().images)


def _num_classes(s) -> int:
    return len(s.classes) if s.classes else int(s.labels.max()) + 1


def load(cfg: RunConfig, labeled_subset: bool = False, out: str | Path | None = None) -> RunData:
    """Reads the sets of a run (see the module docstring).

    Args:
        cfg: the run's config.
        labeled_subset: also draw the labeled subset and the unlabeled images
            (``METHODS[cfg.method].kind.labeled_subset``).
        out: run folder, where a labeled split is saved (``split.json``).

    Raises:
        ValueError: a labeled-subset method without a label count, too few images, or a folder
            whose images differ in size while ``data.image_size`` is unset.
    """
    d = cfg.data
    train = _read(cfg, d.train_split)
    test = _read(cfg, d.test_split)
    images = train.images if isinstance(train, ImageSet) else None
    if d.name == "folder":
        train, test = fit_folder(cfg, [train, test])
        channels, native = d.channels, d.image_size
        mean, std = _folder_mean_std(d, train)
    else:
        channels, native = images.shape[1], images.shape[-1]
        mean, std = normalization_stats(d.name, images)
    run = RunData(train=train, test=test)
    run.meta = {"in_channels": int(channels), "num_classes": _num_classes(test),
                "image_size": int(d.image_size or native), "mean": mean, "std": std}
    has_labels = bool((train.labels >= 0).any())
    run.bank = train if has_labels else _read(cfg, "train")
    if not labeled_subset:
        return run
    if d.labels_per_class is None and d.label_fraction is None:
        raise ValueError(f"method {cfg.method!r} trains on a labeled subset: set data.labels_per_class "
                         f"(e.g. 4 for CIFAR-10@40) or data.label_fraction")
    labeled_idx, unlabeled_idx = data_mod.split_labeled(train.labels, per_class=d.labels_per_class,
                                                        fraction=d.label_fraction, seed=d.split_seed,
                                                        classes=train.classes, unlabeled=d.unlabeled)
    if out is not None:
        data_mod.save_split(Path(out) / "split.json", labeled_idx, unlabeled_idx, dataset=d.name,
                            seed=d.split_seed)
    run.labeled = train.subset(labeled_idx)
    unlabeled = train.subset(unlabeled_idx)
    if d.unlabeled_split:
        if images is None:
            raise ValueError("data.unlabeled_split needs an in-memory data set, not data.name=folder")
        extra = _read(cfg, d.unlabeled_split)
        unlabeled = data_mod.ImageSet(torch.cat([unlabeled.images, extra.images]),
                                      torch.cat([unlabeled.labels, extra.labels]), unlabeled.classes)
    run.unlabeled = unlabeled
    run.meta["labels"] = int(len(labeled_idx))
    return run
