"""The smoothing rules on lists of tensors: which units are drawn and how they move.

Everything here is a pure function of its arguments (the random draws come from
the ``generator`` passed in), depends only on PyTorch and NumPy, and works in place on
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
(paper 003 Eq. 9). A BatchNorm without gamma (``affine=False``) is one unit all
the same: its running_var follows running_mean's draw. The tensors of a
parametrisation (weight norm's ``parametrizations.weight.original0/1``, i.e. g
and v) belong to the group of the module they parametrise, with its bias.
Non-floating tensors (``num_batches_tracked``) are copied.

How the units are drawn, fast, is :mod:`stsmooth.draws`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from stsmooth.draws import (
    CHUNK,
    DrawPlan,
    Unit,
    cpu_fast_path,
    lerp_by_rate,
    move_channels,
    move_neurons,
    move_neurons_cpu,
    move_whole,
    plan_units,
)

__all__ = ["CHUNK", "GRANULARITIES", "DrawPlan", "Unit", "check_granularity", "check_probability", "module_tensors",
           "plan_units", "smooth_"]

GRANULARITIES = ("tensor", "layer", "channel", "neuron")


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


@torch.no_grad()
def smooth_(
    teacher: Sequence[Tensor],
    student: Sequence[Tensor],
    momentum: float | Sequence[float],
    preserve_prob: float,
    granularity: str = "tensor",
    generator: torch.Generator | None = None,
    units: Sequence[Unit] | None = None,
    plan: DrawPlan | None = None,
) -> None:
    """One Spatial-Temporal Smoothing step, in place on ``teacher`` (paper 000 Eq. 3).

    Args:
        teacher: the teacher's floating tensors, updated in place.
        student: the student's tensors, same shapes and order.
        momentum: TMA momentum m in [0, 1]; 0 gives Spatial Ensemble. Or one m per tensor:
            a tensor with m=0 takes the student's value whenever its unit is drawn, as
            ``norm="copy"`` does for BatchNorm statistics (paper 003 Table 8 "student PN").
        preserve_prob: preserving probability p in [0, 1]; 0 gives TMA.
        granularity: ``"tensor"``, ``"layer"``, ``"channel"`` or ``"neuron"``.
        generator: source of the Bernoulli draws (on the tensors' device).
        units: from :func:`plan_units`; default: every tensor is its own group.
        plan: a :class:`DrawPlan` of ``units`` (saves rebuilding it every step).

    Example:
        >>> t, s = [torch.zeros(3)], [torch.ones(3)]
        >>> smooth_(t, s, momentum=0.9, preserve_prob=0.0)
        >>> t[0]
        tensor([0.1000, 0.1000, 0.1000])
    """
    if isinstance(momentum, Sequence):
        if len(momentum) != len(teacher):
            raise ValueError(f"momentum has {len(momentum)} values but teacher has {len(teacher)} tensors")
        rates = [1.0 - check_probability("momentum", m) for m in momentum]
    else:
        rates = [1.0 - check_probability("momentum", momentum)] * len(teacher)
    preserve_prob = check_probability("preserve_prob", preserve_prob)
    check_granularity(granularity)
    if len(teacher) != len(student):
        raise ValueError(f"teacher has {len(teacher)} tensors but student has {len(student)}")
    if preserve_prob == 1.0 or not teacher:
        return
    if preserve_prob == 0.0:
        # TMA: every unit moves; no draws, one fused multi-tensor kernel per rate.
        lerp_by_rate(teacher, student, range(len(teacher)), rates)
        return
    if plan is None:
        if units is None:
            units = [Unit(group=i, source=i) for i in range(len(teacher))]
        plan = DrawPlan([t.shape for t in teacher], units)
    elif len(plan.shapes) != len(teacher):
        raise ValueError(f"plan is for {len(plan.shapes)} tensors but teacher has {len(teacher)}")
    if granularity in ("tensor", "layer"):
        move_whole(teacher, student, plan, rates, preserve_prob, granularity, generator)
    elif granularity == "channel":
        move_channels(teacher, student, plan, rates, preserve_prob, generator)
    elif teacher[0].device.type == "cpu" and cpu_fast_path(teacher, student):
        move_neurons_cpu(teacher, student, plan, rates, preserve_prob, generator)
    else:
        move_neurons(teacher, student, plan, rates, preserve_prob, generator)


def module_tensors(module: torch.nn.Module, statistics: bool = True) -> tuple[list[str], list[Tensor], list[Unit], list[str]]:
    """List a module's floating tensors in smoothing order, with their draw plan.

    Groups are modules: each module's own parameters, then (with ``statistics``)
    its own floating buffers. A tensor shared by two modules is listed once. The
    tensors of a ``torch.nn.utils.parametrize`` parametrisation (weight norm's g and v)
    join the group of the module they parametrise.

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
    group_of: dict[int, int] = {}  # id(module that owns the tensors) -> group index
    owner: dict[int, int] = {}  # id(parametrisation submodule) -> id(parametrised module)
    for prefix, mod in module.named_modules(remove_duplicate=False):
        key = owner.get(id(mod), id(mod))
        if parametrize.is_parametrized(mod):
            # named_modules is pre-order: mod comes before its `parametrizations` children
            owner.update((id(sub), key) for sub in mod.parametrizations.modules())
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
            groups.append(group_of.setdefault(key, len(group_of)))
            is_buffer.append(buf)
    units = plan_units([t.shape for t in tensors], groups, is_buffer)
    return names, tensors, units, other
