"""The contract of a method module, written as types: :class:`Method`, :class:`MethodModel`, :class:`Kind`.

A method module (``stsmooth.methods.byol``, ...) is listed by name in
:data:`stsmooth.methods.METHODS` and provides what :class:`Method` declares.
What differs between self-supervised and semi-supervised methods (data,
batches, scores) is not spelled as a string the loop compares: each module
sets ``kind`` to :data:`SELF_SUPERVISED` or :data:`SEMI_SUPERVISED`, whose
fields say what the loop has to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Kind:
    """What a method learns from and how it is scored; :mod:`stsmooth.training` reads the fields.

    Attributes:
        name: for messages.
        labeled_subset: trains on a labeled subset of the training split
            (``data.labels_per_class`` or ``data.label_fraction``) plus unlabeled
            images, in batches ``{"x_l", "y_l", "x_u"}`` (``x_u``: ``Config.mu`` x B
            images, none at ``mu = 0``); otherwise on the whole training split, in
            batches ``{"x", "y"}``.
        knn: teacher and student are scored by kNN on their backbone features
            (003 §5, keys ``knn_top1`` / ``knn_top5``); otherwise by the top-k
            accuracy of their classifier on the test split (``top1`` / ``top5``).
    """

    name: str
    labeled_subset: bool
    knn: bool

    @property
    def metrics(self) -> tuple[str, str]:
        """Names of the two accuracies a run reports for teacher and student."""
        return ("knn_top1", "knn_top5") if self.knn else ("top1", "top5")


SELF_SUPERVISED = Kind("self-supervised", labeled_subset=False, knn=True)
SEMI_SUPERVISED = Kind("semi-supervised", labeled_subset=True, knn=False)


def check_at_least(section: str, cfg: Any, names: tuple[str, ...], low: float) -> None:
    """For a method's ``validate``: ValueError ``section.name=value must be >= low`` for the first field below ``low``."""
    for name in names:
        value = getattr(cfg, name)
        if value < low:
            raise ValueError(f"{section}.{name}={value!r} must be >= {low}")


class MethodModel(nn.Module):
    """Base of the methods' models: ``model.student`` is what the Teacher copies, ``forward`` is the loss.

    ``forward`` calling :meth:`loss` lets the training loop wrap the whole model
    once in DistributedDataParallel (as DINO and nanoGPT wrap theirs), so every
    trainable parameter, the student's and any head outside it, is averaged by DDP.
    """

    student: nn.Module

    def loss(self, batch: dict, teacher: Any, step: int) -> tuple[torch.Tensor, dict]:
        """One step's loss (no optimiser step, no teacher update).

        Args:
            batch: uint8 images on the device, keys as ``kind`` says.
            teacher: the :class:`~stsmooth.core.teacher.Teacher` of ``self.student``.
            step: global step k (0-based), for loss schedules.

        Returns:
            (scalar loss with gradient, logs of detached scalars).
        """
        raise NotImplementedError

    def forward(self, batch: dict, teacher: Any, step: int) -> tuple[torch.Tensor, dict]:
        return self.loss(batch, teacher, step)


class Method(Protocol):
    """What a method module provides (``stsmooth.methods.byol`` is one)."""

    kind: Kind
    #: a dataclass of the method's hyper-parameters; the config section named after the module
    Config: type

    def validate(self, cfg: Any) -> None:
        """One-line ValueError for an out-of-range setting of ``Config``; the config loader calls it once."""

    def augment_recipes(self, cfg: Any) -> dict[str, str]:
        """``{view key: stsmooth.augment recipe}`` the loop builds into the model's ``augment`` dict."""

    def build(self, cfg: Any, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> MethodModel:
        """The method's model around ``backbone`` (built with ``num_classes=0``).

        ``augment`` holds the recipes of :meth:`augment_recipes` (uint8 -> [0, 1]
        floats), ``"normalize"`` (the data set's mean/std, applied by the student
        itself) and ``"eval"``; ``num_classes`` is the data set's (self-supervised
        methods ignore it).
        """
