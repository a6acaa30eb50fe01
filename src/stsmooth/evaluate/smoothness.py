"""How much a teacher moves: mean squared differences between two snapshots (paper 000 Fig. 3).

Paper 000 §3.1 measures the smoothing effect of TMA and SE by "the
Mean-Square Errors (MSE) between teachers at two adjacent epochs, as well as
the MSE between their outputs" (Fig. 3 left: parameters, right: the
supervision signals). Take a :func:`snapshot` of the teacher at the end of
each epoch and compare consecutive ones with :func:`param_msd`; compare the
outputs of two snapshots on a fixed probe batch with :func:`output_msd`.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from stsmooth.data.imageset import to_float
from stsmooth.evaluate.features import eval_mode, model_device


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def snapshot(module: nn.Module, buffers: bool = False) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a module's parameters (and floating buffers with ``buffers=True``).

    Args:
        module: e.g. ``teacher.module``; sharded with FSDP2 too (every rank calls it then).
        buffers: also copy floating buffers such as BatchNorm running statistics.

    Returns:
        ``{name: tensor}``, independent of later updates to ``module``.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"snapshot needs an nn.Module; got {type(module).__name__}")
    # an FSDP2 module's parameters are shards (DTensors): gathered, on every rank (a collective)
    out = {name: _full(p).detach().to("cpu", copy=True) for name, p in module.named_parameters()}
    if buffers:
        out.update({name: b.detach().to("cpu", copy=True) for name, b in module.named_buffers() if b.dtype.is_floating_point})
    return out


def _floating(x, name: str) -> dict[str, torch.Tensor]:
    if isinstance(x, nn.Module):
        return snapshot(x)
    if isinstance(x, Mapping):
        return {k: v for k, v in x.items() if isinstance(v, torch.Tensor) and v.dtype.is_floating_point}
    raise ValueError(f"{name} must be an nn.Module or a mapping name -> tensor (state_dict / snapshot); got {type(x).__name__}")


def param_msd(a, b) -> float:
    """Mean squared difference over all floating parameters, pooled over every element.

    ``sum over tensors t of sum((a_t - b_t)^2) / total number of elements``,
    so a large layer weighs by its size (paper 000 Fig. 3 left).

    Args:
        a, b: nn.Modules (their parameters are compared) or mappings
            ``name -> tensor`` (a :func:`snapshot` or a ``state_dict``: every
            floating entry is compared, buffers included).

    Returns:
        The mean squared difference as a float (0 for identical snapshots).
    """
    sa, sb = _floating(a, "a"), _floating(b, "b")
    if sa.keys() != sb.keys():
        only_a, only_b = sorted(sa.keys() - sb.keys()), sorted(sb.keys() - sa.keys())
        raise ValueError(f"snapshots differ in names: only in a {only_a[:3]}, only in b {only_b[:3]}")
    if not sa:
        raise ValueError("no floating parameters to compare")
    total, count = torch.zeros((), dtype=torch.float64), 0
    for name, ta in sa.items():
        tb = sb[name]
        if ta.shape != tb.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(ta.shape)} in a but {tuple(tb.shape)} in b")
        diff = ta.detach().double() - tb.detach().to(ta.device).double()
        total += diff.pow(2).sum().cpu()
        count += diff.numel()
    return float(total / max(count, 1))


@torch.no_grad()
def output_msd(a, b, probe_batch: torch.Tensor | None = None, transform=None) -> float:
    """Mean squared difference between two models' outputs on one probe batch (paper 000 Fig. 3 right).

    Args:
        a, b: two nn.Modules (each run in eval mode on ``probe_batch``, modes
            restored) or two output tensors of the same shape.
        probe_batch: (B, C, H, W) uint8 or float input, needed for modules.
        transform: input transform for uint8 batches; default ``/255``.

    Returns:
        ``mean((out_a - out_b)^2)`` over every element, as a float.
    """
    if isinstance(a, nn.Module) != isinstance(b, nn.Module):
        raise ValueError(f"a and b must both be modules or both be tensors; got {type(a).__name__} and {type(b).__name__}")
    if isinstance(a, nn.Module):
        if not isinstance(probe_batch, torch.Tensor):
            raise ValueError("output_msd of two modules needs probe_batch, a (B, C, H, W) tensor")
        transform = to_float if transform is None else transform
        with eval_mode(a, b):
            out_a = a(transform(probe_batch.to(model_device(a))))
            out_b = b(transform(probe_batch.to(model_device(b))))
    else:
        out_a, out_b = a, b
    if not isinstance(out_a, torch.Tensor) or not isinstance(out_b, torch.Tensor):
        raise ValueError(f"outputs must be tensors; got {type(out_a).__name__} and {type(out_b).__name__}")
    if out_a.shape != out_b.shape:
        raise ValueError(f"outputs have shapes {tuple(out_a.shape)} and {tuple(out_b.shape)}; they must match")
    return float((out_a.double() - out_b.to(out_a.device).double()).pow(2).mean())
