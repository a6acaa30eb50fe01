"""How a training step runs the method's model: DistributedDataParallel and torch.compile.

The whole method model is wrapped once in DDP, as DINO and nanoGPT wrap
theirs: ``forward`` of every :class:`~stsmooth.methods.contract.MethodModel`
is its loss, so a step calls the wrapper and DDP averages the gradients of
every trainable parameter, the student's and those of heads outside it (BYOL's
predictor), in its buckets. The plain model keeps its own parameter names, so
the teacher update, evaluation and checkpoints use it and never see a wrapper.

DDP broadcasts rank 0's buffers (BatchNorm statistics, MoCo's queue, which is
the same on every rank) at each forward, as it did for the student alone; the
teacher then averages the students' statistics (:class:`~stsmooth.core.teacher.Teacher`).
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.core.distributed import is_distributed
from stsmooth.methods.contract import MethodModel


def wrap(model: MethodModel, device: torch.device, compile: bool = False) -> nn.Module:
    """What a training step calls: ``model`` itself, or DDP around it under torchrun.

    Args:
        model: the method's model; stays the owner of the parameters.
        device: the rank's device.
        compile: ``torch.compile`` the student in place (its ``state_dict`` names do not change).

    Returns:
        A module whose call ``(batch, teacher, step)`` returns ``model.loss``'s ``(loss, logs)``.
    """
    if compile:
        model.student.compile()
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
