"""Fine-tuning: the whole pretrained network trained with a fresh linear head.

Paper 003 §5.2 ("Linear Classification and Finetuning"): fine-tuning on the
labelled subset worked best with separate learning rates for the pretrained
encoder (searched in {0.0001, 0.001, 0.01}) and the randomly initialised
classifier (1.0 for 1% labels, 0.1 for 10%), 50 epochs. Unlike the linear
probe, BatchNorm runs in training mode and its statistics adapt.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.data.imageset import to_float
from stsmooth.evaluate.features import extract_features, labelled, model_device
from stsmooth.evaluate.linear import lr_schedule
from stsmooth.evaluate.metrics import topk_accuracy


def feature_dim(backbone: nn.Module, images: torch.Tensor, transform=None) -> int:
    """``backbone.num_features`` if present, else the width of its output on two images."""
    dim = getattr(backbone, "num_features", None)
    if isinstance(dim, int) and dim > 0:
        return dim
    return extract_features(backbone, images[:2], transform=transform).shape[1]


def finetune(
    backbone: nn.Module,
    num_classes: int,
    train,
    test,
    epochs: int = 50,
    lr: float = 0.01,
    head_lr: float = 0.1,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    milestones=(0.6, 0.8),
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device=None,
    seed: int = 0,
    inplace: bool = False,
    eval_batch_size: int = 256,
) -> dict[str, float]:
    """Trains ``backbone`` + a new ``nn.Linear(D, num_classes)`` end to end; reports test accuracy.

    Args:
        backbone: maps a float batch (B, C, H, W) to (B, D) features.
        num_classes: C of the new head.
        train, test: ImageSets (uint8 images (N, C, H, W), int64 labels);
            unlabeled images (-1) are dropped.
        epochs: passes over the labelled training images.
        lr: encoder learning rate; head_lr: head learning rate (paper 003 §5.2).
        batch_size, momentum, weight_decay: SGD settings (the last incomplete
            batch is dropped when there is at least one full batch, so that
            BatchNorm never sees a batch of one).
        schedule, milestones: learning-rate schedule, see
            :func:`~stsmooth.evaluate.linear.lr_schedule`.
        augment: uint8 training batch -> model input (e.g. a
            ``stsmooth.augment`` recipe followed by normalisation); default ``transform``.
        transform: uint8 batch -> model input at test time (and for training
            without ``augment``); default ``/255``.
        device: where to train; default the backbone's device.
        seed: head initialisation, batch order and (through a forked global
            RNG) the augmentation draws; the caller's RNG state is untouched.
        inplace: train ``backbone`` itself; by default a deep copy is trained.
        eval_batch_size: batch size of the test pass.

    Returns:
        ``{"top1": %, "top5": %}`` on ``test`` after the last epoch.
    """
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"backbone must be an nn.Module; got {type(backbone).__name__}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    images, labels = labelled(train, "train")
    test_images, test_labels = labelled(test, "test")
    if int(max(labels.max(), test_labels.max())) >= num_classes:
        raise ValueError(f"labels go up to {int(max(labels.max(), test_labels.max()))} but num_classes is {num_classes}")
    n = len(images)
    steps_per_epoch = max(1, n // batch_size)  # n < batch_size: one batch of all n
    lr_at = [lr_schedule(base, epochs * steps_per_epoch, schedule, milestones) for base in (lr, head_lr)]
    device = model_device(backbone) if device is None else torch.device(device)
    transform = to_float if transform is None else transform
    augment = transform if augment is None else augment

    encoder = backbone if inplace else copy.deepcopy(backbone)
    encoder = encoder.to(device)
    images, labels = images.to(device), labels.to(device)
    dim = feature_dim(encoder, images, transform)
    rng_devices = [device] if device.type == "cuda" else []
    # Head init, batch order and augmentation draws all come from `seed`; the caller's RNG is restored.
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        head = nn.Linear(dim, num_classes)
        with torch.no_grad():
            head.weight.normal_(0.0, 0.01)
            head.bias.zero_()
        model = nn.Sequential(encoder, head.to(device))
        groups = [{"params": encoder.parameters(), "lr": lr}, {"params": head.parameters(), "lr": head_lr}]
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
        g = torch.Generator().manual_seed(seed)
        model.train()
        step = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=g).to(device)
            for b in range(steps_per_epoch):
                idx = order[b * batch_size : (b + 1) * batch_size]
                for group, schedule_of in zip(opt.param_groups, lr_at):
                    group["lr"] = schedule_of(step)
                x = augment(images.index_select(0, idx))
                loss = F.cross_entropy(model(x), labels.index_select(0, idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            # Checked once per epoch: a per-step .item() would synchronise the GPU every step.
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"fine-tuning loss became {loss.item()} by step {step}; lower lr ({lr}) or head_lr ({head_lr})")
    logits = extract_features(model, test_images, batch_size=eval_batch_size, transform=transform)
    return topk_accuracy(logits, test_labels.to(logits.device))
