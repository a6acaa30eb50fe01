"""The optimiser of a run and its learning rate as a pure function of the step.

The learning rate depends on nothing but the global step, so a resumed run
sets exactly the rates an uninterrupted one would.

Schedules (after a linear warm-up from ``warmup_factor x lr``, 000 §4.1):

* ``cosine``: ``lr * (1 + cos(pi t)) / 2`` with t the post-warm-up progress (000 §4.1);
* ``fixmatch``: ``lr * cos(7 pi k / (16 K))`` (FixMatch);
* ``step``: ``lr * 0.1^(milestones passed)`` (003 §5.3 FixMatch 60/80 epochs);
* ``constant``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stsmooth.training.lars import LARS


def param_groups(model: nn.Module, weight_decay: float, exclude_bias_bn: bool) -> list[dict]:
    """Splits trainable parameters into decayed and (optionally) undecayed groups.

    With ``exclude_bias_bn`` every tensor of rank <= 1 (biases, BatchNorm
    weights and biases) gets no weight decay and no LARS trust ratio, as the
    releases do: kekmodel/FixMatch-pytorch ``train.py`` (``no_decay = ['bias', 'bn']``),
    google-research/fixmatch ``fixmatch.py`` (L2 on ``kernel`` variables only) and
    EMAN's ``main_byol.py`` (``collect_params(exclude_bias_and_bn=True)``). The EMAN
    FixMatch release (``main_fixmatch.py``) decays every parameter.

    Returns:
        One group ``{"params", "weight_decay"}``, or two: decayed (rank >= 2) and
        undecayed (rank <= 1, ``"lars": False``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not exclude_bias_bn:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "lars": False}]


def build(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg`` (an ``OptimConfig``) over ``model``'s trainable parameters.

    Raises:
        ValueError: unknown optimiser name.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_bn)
    if cfg.name == "sgd":
        for g in groups:
            g.pop("lars", None)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    raise ValueError(f"optim.name={cfg.name!r} is not one of sgd, lars")


def learning_rate(cfg, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step`` (0-based) of a run with ``cfg.epochs`` epochs.

    Args:
        cfg: an ``OptimConfig`` (lr, schedule, warmup_epochs, warmup_factor, milestones, epochs).
        step: global optimiser step.
        steps_per_epoch: optimiser steps per epoch.

    Returns:
        The learning rate (float).
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return cfg.lr * (cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / warmup)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    if cfg.schedule == "fixmatch":
        return cfg.lr * math.cos(7.0 * math.pi * min(step, total) / (16.0 * total))
    if cfg.schedule == "step":
        epoch = step / steps_per_epoch
        return cfg.lr * 0.1 ** sum(epoch >= m for m in cfg.milestones)
    raise ValueError(f"optim.schedule={cfg.schedule!r} is not one of cosine, constant, step, fixmatch")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
