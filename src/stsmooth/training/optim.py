"""The optimiser of a run and its learning rate as a pure function of the step.

The learning rate depends on nothing but the global step, so a resumed run
sets exactly the rates an uninterrupted one would. Its schedules are those of
:mod:`stsmooth.core.schedules` (after a linear warm-up from ``warmup_factor x lr``, 000 §4.1):

* ``cosine``: ``lr * (1 + cos(pi t)) / 2`` with t the post-warm-up progress (000 §4.1);
* ``fixmatch``: ``lr * cos(7 pi k / (16 K))`` (FixMatch);
* ``step``: ``lr * 0.1^(milestones passed)`` (003 §5.3 FixMatch 60/80 epochs);
* ``constant``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from stsmooth.core import schedules
from stsmooth.training.lars import LARS

if TYPE_CHECKING:  # the config checks its optim section against the lists below
    from stsmooth.training.config import OptimConfig

OPTIMIZERS = ("sgd", "lars")
LR_SCHEDULES = ("cosine", "constant", "step", "fixmatch")


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


def build(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg`` over ``model``'s trainable parameters.

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
    raise ValueError(f"optim.name={cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")


def lr_schedule(cfg: OptimConfig, steps_per_epoch: int) -> schedules.Schedule:
    """The learning rate as a function of the global step (0-based) of a run with ``cfg.epochs`` epochs.

    Args:
        cfg: lr, schedule, warmup_epochs, warmup_factor, milestones (epochs), epochs.
        steps_per_epoch: optimiser steps per epoch.

    Raises:
        ValueError: ``cfg.schedule`` is not one of :data:`LR_SCHEDULES`.
    """
    if cfg.schedule not in LR_SCHEDULES:
        raise ValueError(f"optim.schedule={cfg.schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    return schedules.build(cfg.schedule, cfg.lr, total, final=0.0, warmup_steps=warmup,
                           warmup_factor=cfg.warmup_factor,
                           milestones=[m * steps_per_epoch for m in cfg.milestones])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
