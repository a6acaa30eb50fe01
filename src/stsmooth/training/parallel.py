"""How the student runs during training steps: DDP and torch.compile wrappers.

Only the student is wrapped (DistributedDataParallel, then ``torch.compile``),
and only while the step runs: :meth:`StudentRunner.wrapped` puts the wrapper in
``model.student`` so the method's ``loss`` calls go through it, and puts the
plain module back afterwards, so the teacher update, evaluation and
checkpoints always see the plain student with its plain parameter names.

Trainable parameters outside the student (BYOL's predictor) are not in DDP;
their gradients are averaged across ranks by :meth:`sync_extra_gradients`
after the backward pass, so every rank applies the same update.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from stsmooth.core.distributed import average_, is_distributed


class StudentRunner:
    """Wraps ``model.student`` for training steps.

    Args:
        model: the method's model (``model.student`` is the plain student).
        device: the rank's device.
        compile: ``torch.compile`` the (DDP-wrapped) student.
    """

    def __init__(self, model: nn.Module, device: torch.device, compile: bool = False):
        self.plain = model.student
        wrapped: nn.Module = self.plain
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            # Buffers (BN statistics) follow rank 0 at every forward (DDP's default).
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        if compile:
            wrapped = torch.compile(wrapped)
        self.wrapper = wrapped
        student_ids = {id(p) for p in self.plain.parameters()}
        self.extra = [p for p in model.parameters() if p.requires_grad and id(p) not in student_ids]

    @contextlib.contextmanager
    def wrapped(self, model: nn.Module):
        """``model.student`` is the wrapper inside the block, the plain student after it."""
        if self.wrapper is self.plain:
            yield
            return
        model.student = self.wrapper
        try:
            yield
        finally:
            model.student = self.plain

    def sync_extra_gradients(self) -> None:
        """Averages across ranks the gradients of trainable parameters outside the student."""
        if not is_distributed():
            return
        grads = [p.grad for p in self.extra if p.grad is not None]
        average_(grads)
