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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from stsmooth import data as data_mod
from stsmooth.augment import MEAN_STD
from stsmooth.data import FolderSet, ImageSet
from stsmooth.training.config import RunConfig

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


def normalization_stats(name: str, images: torch.Tensor | None) -> tuple[list[float], list[float]]:
    """The data set's per-channel mean/std in [0, 1] units: the published table, else measured."""
    key = STATS_KEY.get(name, name)
    if key in MEAN_STD:
        mean, std = MEAN_STD[key]
        return list(mean), list(std)
    if images is None:
        return [0.5], [0.25]
    sample = images[: 10000].float().div(255.0)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _read(cfg: RunConfig, split: str) -> Images:
    d = cfg.data
    options = {}
    if d.name == "folder":
        size = d.image_size or 224
        options["size"] = d.decode_size or round(size * 8 / 7)
    return data_mod.load(d.name, root=d.root, split=split, download=d.download, **options)


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
        ValueError: a labeled-subset method without a label count, or too few images.
    """
    d = cfg.data
    train = _read(cfg, d.train_split)
    test = _read(cfg, d.test_split)
    images = train.images if isinstance(train, ImageSet) else None
    channels = images.shape[1] if images is not None else 3
    native = images.shape[-1] if images is not None else 224
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
