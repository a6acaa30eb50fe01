"""The smoothing rules on lists of tensors: which units are drawn and how they move.

Everything here is a pure function of its arguments (the random draws come from
the ``generator`` passed in), depends only on PyTorch, and works in place on
the teacher's tensors. :class:`stsmooth.Teacher` builds the lists from modules;
users with their own teacher copy can call :func:`smooth_` directly.

Spatial-Temporal Smoothing, paper 000 Eq. 3, for every unit i::

    theta_T <- P_i * theta_T + (1 - P_i) * (m * theta_T + (1 - m) * theta_S),   P_i ~ Ber(p)

so a preserved unit (P_i = 1) keeps its value and a drawn unit takes one TMA
step. It degenerates exactly (paper 000 Eq. 2, Eq. 4, Fig. 4):

=====  =====  ==========================================
 p      m     rule
=====  =====  ==========================================
 0      m     TMA / EMA: every unit moves (Eq. 4)
 p      0     Spatial Ensemble: drawn units copy the student (Eq. 2)
 1      any   teacher unchanged
 0      0     teacher = student (no smoothing)
=====  =====  ==========================================

Units (paper 000 §4.3, Table 4) are defined over *groups*: the floating tensors
of one module (its weight, bias and, for BatchNorm, running statistics).

============  ===========================================================
granularity   one Bernoulli draw per
============  ===========================================================
``tensor``    parameter tensor (as the official STS code draws)
``layer``     group: all tensors of a module move together
``channel``   output channel (index along dim 0), shared by every tensor
              of the group whose dim 0 has that size (conv weight row,
              its bias, BatchNorm gamma/beta/mean/var of that channel)
``neuron``    scalar parameter
============  ===========================================================

A buffer (a BatchNorm running statistic) never draws for itself when its group
holds a parameter of the same shape: it follows that parameter's draw (BN's
gamma), so EMAN statistics move exactly when their layer's weights do
(paper 003 Eq. 9). Non-floating tensors (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

GRANULARITIES = ("tensor", "layer", "channel", "neuron")


@dataclass(frozen=True)
class Unit:
    """How one floating tensor takes its draws.

    Attributes:
        group: index of the module group the tensor belongs to.
        source: index of the tensor whose draws it shares (itself when it draws).
    """

    group: int
    source: int


def check_probability(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise if it is not a number in [0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; allowed: a float in [0, 1]") from None
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name}={value!r} is outside the allowed range [0, 1]")
    return v


def check_granularity(granularity: str) -> str:
    """Return ``granularity`` or raise naming the allowed values."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity={granularity!r} is not one of {', '.join(GRANULARITIES)}")
    return granularity


def plan_units(shapes: Sequence[torch.Size], groups: Sequence[int], is_buffer: Sequence[bool]) -> list[Unit]:
    """Decide, once, which tensor's draws each tensor follows.

    Args:
        shapes: shape of each floating tensor.
        groups: group (module) index of each tensor; tensors of a group are contiguous or not.
        is_buffer: whether each tensor is a buffer (running statistic) rather than a parameter.

    Returns:
        One :class:`Unit` per tensor.
    """
    first_param_of_shape: dict[tuple[int, tuple[int, ...]], int] = {}
    for i, (shape, g, buf) in enumerate(zip(shapes, groups, is_buffer)):
        if not buf:
            first_param_of_shape.setdefault((g, tuple(shape)), i)
    units = []
    for i, (shape, g, buf) in enumerate(zip(shapes, groups, is_buffer)):
        source = first_param_of_shape.get((g, tuple(shape)), i) if buf else i
        units.append(Unit(group=g, source=source))
    return units


def _draw_weights(
    teacher: Sequence[Tensor],
    units: Sequence[Unit],
    momentum: float,
    preserve_prob: float,
    granularity: str,
    generator: torch.Generator | None,
) -> list[tuple[int, float | Tensor]]:
    """Draw the units and return ``(tensor index, lerp weight)`` for each tensor that moves.

    The weight is ``1 - m`` for a tensor that moves whole, or a tensor broadcastable
    to it holding ``1 - m`` on drawn entries and 0 on preserved ones.
    """
    rate = 1.0 - momentum
    device = teacher[0].device if teacher else torch.device("cpu")
    n_groups = max((u.group for u in units), default=-1) + 1

    if granularity in ("tensor", "layer"):
        n = n_groups if granularity == "layer" else len(units)
        keep = torch.rand(n, generator=generator, device=device).ge_(preserve_prob).tolist()
        moved = []
        for i, u in enumerate(units):
            drawn = keep[u.group] if granularity == "layer" else keep[u.source]
            if drawn:
                moved.append((i, rate))
        return moved

    # channel / neuron: one mask per drawing tensor, shared by the tensors that follow it.
    masks: dict[int, Tensor] = {}
    moved = []
    if granularity == "channel":
        # channel c of a group is one unit: every tensor of the group with C rows shares the draw.
        group_rows: dict[tuple[int, int], Tensor] = {}
        for i, u in enumerate(units):
            t = teacher[i]
            rows = t.shape[0] if t.dim() > 0 else 1
            key = (u.group, rows)
            if key not in group_rows:
                group_rows[key] = torch.rand(rows, generator=generator, device=device).ge_(preserve_prob)
            mask = group_rows[key]
            shape = (rows,) + (1,) * max(t.dim() - 1, 0) if t.dim() > 0 else ()
            moved.append((i, mask.to(t.dtype).mul_(rate).reshape(shape)))
        return moved

    for i, u in enumerate(units):
        t = teacher[i]
        if u.source not in masks:
            masks[u.source] = torch.rand(t.shape, generator=generator, device=device).ge_(preserve_prob)
        moved.append((i, masks[u.source].to(t.dtype).mul_(rate)))
    return moved


@torch.no_grad()
def smooth_(
    teacher: Sequence[Tensor],
    student: Sequence[Tensor],
    momentum: float,
    preserve_prob: float,
    granularity: str = "tensor",
    generator: torch.Generator | None = None,
    units: Sequence[Unit] | None = None,
) -> None:
    """One Spatial-Temporal Smoothing step, in place on ``teacher`` (paper 000 Eq. 3).

    Args:
        teacher: the teacher's floating tensors, updated in place.
        student: the student's tensors, same shapes and order.
        momentum: TMA momentum m in [0, 1]; 0 gives Spatial Ensemble.
        preserve_prob: preserving probability p in [0, 1]; 0 gives TMA.
        granularity: ``"tensor"``, ``"layer"``, ``"channel"`` or ``"neuron"``.
        generator: source of the Bernoulli draws (on the tensors' device).
        units: from :func:`plan_units`; default: every tensor is its own group.

    Example:
        >>> t, s = [torch.zeros(3)], [torch.ones(3)]
        >>> smooth_(t, s, momentum=0.9, preserve_prob=0.0)
        >>> t[0]
        tensor([0.1000, 0.1000, 0.1000])
    """
    momentum = check_probability("momentum", momentum)
    preserve_prob = check_probability("preserve_prob", preserve_prob)
    check_granularity(granularity)
    if len(teacher) != len(student):
        raise ValueError(f"teacher has {len(teacher)} tensors but student has {len(student)}")
    if units is None:
        units = [Unit(group=i, source=i) for i in range(len(teacher))]
    if preserve_prob == 1.0 or not teacher:
        return
    if preserve_prob == 0.0:
        # TMA: every unit moves; no draws, one fused multi-tensor kernel.
        torch._foreach_lerp_(list(teacher), list(student), 1.0 - momentum)
        return
    moved = _draw_weights(teacher, units, momentum, preserve_prob, granularity, generator)
    whole = [i for i, w in moved if not isinstance(w, Tensor)]
    if whole:
        torch._foreach_lerp_([teacher[i] for i in whole], [student[i] for i in whole], 1.0 - momentum)
    for i, w in moved:
        if isinstance(w, Tensor):
            teacher[i].lerp_(student[i], w)


def module_tensors(module: torch.nn.Module, statistics: bool = True) -> tuple[list[str], list[Tensor], list[Unit], list[str]]:
    """List a module's floating tensors in smoothing order, with their draw plan.

    Groups are modules: each module's own parameters, then (with ``statistics``)
    its own floating buffers. A tensor shared by two modules is listed once.

    Args:
        module: the network (teacher or student).
        statistics: include floating buffers (BatchNorm running statistics).

    Returns:
        ``(names, tensors, units, other_names)``: dotted names, tensors and
        :class:`Unit` plans of the smoothed floating tensors, and the names of the
        buffers that are not smoothed (non-floating ones, and floating ones when
        ``statistics`` is False).
    """
    names, tensors, groups, is_buffer, other = [], [], [], [], []
    seen: set[int] = set()
    group = 0
    for prefix, mod in module.named_modules(remove_duplicate=False):
        added = False
        own = [(n, t, False) for n, t in mod.named_parameters(recurse=False)]
        own += [(n, t, True) for n, t in mod.named_buffers(recurse=False)]
        for n, t, buf in own:
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            full = f"{prefix}.{n}" if prefix else n
            if not t.is_floating_point() or (buf and not statistics):
                other.append(full)
                continue
            names.append(full)
            tensors.append(t)
            groups.append(group)
            is_buffer.append(buf)
            added = True
        group += added
    units = plan_units([t.shape for t in tensors], groups, is_buffer)
    return names, tensors, units, other
