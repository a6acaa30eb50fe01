"""Linear probe: a linear classifier trained on frozen, precomputed features.

Paper 000 §4.1: "the parameters of the feature encoder, as well as the BN
statistics, are fixed"; BYOL's probe uses SGD with base learning rate 0.2 and
a cosine schedule for 80 epochs, MoCo's lr 30 decayed by 0.1 at epochs 60 and
80 of 100 (``schedule="step"``). Because the backbone is frozen, its features
are computed once (in eval mode, so BatchNorm uses and keeps its running
statistics) and the classifier trains on them alone, which makes every epoch
a few small matrix products instead of a pass through the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core import schedules
from stsmooth.evaluate.features import check_features, labelled_features
from stsmooth.evaluate.metrics import topk_accuracy

SCHEDULES = ("cosine", "step", "constant")


def lr_schedule(base_lr: float, total: int, schedule: str = "cosine", milestones=(0.6, 0.8)) -> schedules.Schedule:
    """Learning rate as a function of the step of a ``total``-step classifier training.

    ``cosine``: ``base * (1 + cos(pi * step / total)) / 2``; ``step``: base times
    0.1 for each milestone fraction of ``total`` already passed; ``constant``: base
    (:mod:`stsmooth.core.schedules`).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    return schedules.build(schedule, base_lr, max(1, total), final=0.0, milestones=[m * total for m in milestones])


def train_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 80,
    lr: float = 0.2,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    milestones=(0.6, 0.8),
    seed: int = 0,
) -> nn.Linear:
    """Trains ``nn.Linear(D, num_classes)`` with SGD + momentum on fixed features.

    Args:
        features: (N, D) float features; training runs on their device.
        labels: (N,) int64 labels in ``0..num_classes-1``.
        num_classes: output size C.
        epochs, lr, batch_size, momentum, weight_decay: SGD settings; lr is
            updated every step by :func:`lr_schedule`.
        schedule, milestones: see :func:`lr_schedule`.
        seed: seeds the head's initialisation and the batch order.

    Returns:
        The trained head, on the features' device.
    """
    check_features(features, labels, "train")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr!r}")
    device = features.device
    labels = labels.to(device)
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():  # MoCo's probe initialisation, drawn from our generator for determinism
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    head = head.to(device)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = len(features)
    steps_per_epoch = math.ceil(n / batch_size)
    lr_at = lr_schedule(lr, epochs * steps_per_epoch, schedule, milestones)
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=g).to(device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = F.cross_entropy(head(features.index_select(0, idx)), labels.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return head


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int = 80,
    lr: float = 0.2,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    milestones=(0.6, 0.8),
    normalize: bool = False,
    num_classes: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of a linear classifier trained on frozen features.

    Args:
        train_features: (N, D) float features (training runs on their device).
        train_labels: (N,) int64 labels.
        test_features: (M, D) float features.
        test_labels: (M,) int64 labels.
        epochs, lr, batch_size, momentum, weight_decay, schedule, milestones,
            seed: see :func:`train_linear` (defaults: BYOL's probe, paper 000 §4.1).
        normalize: L2-normalise features first.
        num_classes: C; default ``max(train and test labels) + 1``.

    Returns:
        ``{"top1": %, "top5": %}`` on the test features.
    """
    check_features(train_features, train_labels, "train")
    check_features(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"train features have dimension {train_features.shape[1]} but test features {test_features.shape[1]}")
    seen = max(int(train_labels.max()), int(test_labels.max())) + 1
    num_classes = seen if num_classes is None else num_classes
    if seen > num_classes:
        raise ValueError(f"labels go up to {seen - 1} but num_classes is {num_classes}")
    train, test = train_features.float(), test_features.float().to(train_features.device)
    if normalize:
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    head = train_linear(train, train_labels, num_classes, epochs, lr, batch_size, momentum, weight_decay, schedule, milestones, seed)
    with torch.no_grad():
        return topk_accuracy(head(test), test_labels.to(test.device))


def linear_probe_backbone(backbone: nn.Module, train, test, feature_batch_size: int = 256, device=None, transform=None, **options) -> dict[str, float]:
    """Linear probe of a backbone: features of ``train`` and ``test`` computed once, frozen.

    Args:
        backbone: maps a float batch to (B, D) features; used in eval mode
            (BatchNorm running statistics used, not updated), left unchanged.
        train, test: ImageSets (``.images`` uint8 (N, C, H, W), ``.labels``);
            unlabeled images (label -1) are dropped.
        feature_batch_size, device, transform: feature extraction (images per
            forward pass, ...), see :func:`~stsmooth.evaluate.features.extract_features`.
        **options: passed to :func:`linear_probe` (``batch_size`` there is the
            classifier's SGD batch).
    """
    f_train, y_train = labelled_features(backbone, train, feature_batch_size, device, transform)
    f_test, y_test = labelled_features(backbone, test, feature_batch_size, device, transform)
    options.setdefault("num_classes", getattr(train, "num_classes", None) or None)
    return linear_probe(f_train, y_train, f_test, y_test, **options)

