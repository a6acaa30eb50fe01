"""LARS: SGD with a layer-wise trust ratio (You, Gitman & Ginsburg 2017).

Used by BYOL (Grill et al. 2020) and by BYOL-EMAN (003 §5: batch 512, lr 0.9).
For each parameter tensor ``w`` with gradient ``g`` and weight decay ``wd``:

    d     = g + wd * w
    trust = eta * ||w|| / ||d||      (1 when either norm is zero)
    v     = momentum * v + trust * d
    w     = w - lr * v

Parameter groups with ``lars=False`` (biases and BatchNorm in BYOL) skip both
the trust ratio and, by their own ``weight_decay=0``, the decay.
"""

from __future__ import annotations

from typing import Iterable

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling on top of SGD with momentum.

    Args:
        params: parameters or groups; a group may set ``lars=False``.
        lr: learning rate.
        momentum: heavy-ball momentum (0.9 in BYOL).
        weight_decay: L2 weight decay added to the gradient (1.5e-6 in BYOL).
        eta: trust coefficient (0.001 in BYOL).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        if lr <= 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"LARS lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta} out of range")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    d = d.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
