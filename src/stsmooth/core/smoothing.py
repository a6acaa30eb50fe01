"""The rule: Spatial-Temporal Smoothing, paper 000 Eq. 3, on lists of tensors.

For every unit i of the teacher (paper 000 Eq. 3)::

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

Two paths compute the rule. :func:`smooth_reference_` is Eq. 3 as written, on any
device: :func:`draw_units` draws a word w_i per unit (the unit moves, P_i = 0, iff
w_i >= floor(p * 2**32)), then each tensor takes ``where(moves, lerp(theta_T, theta_S, 1 - m),
theta_T)``. :func:`smooth_`, the one to use, gives the same numbers bit for bit through
the speed-ups of :mod:`stsmooth.core.fast`. The draws are counter-based
(:mod:`stsmooth.core.draws`): unit i's word at a step is a hash of (seed, step, i), the
same on every rank, shard and device (changed in 0.2; 0.1 drew from ``torch.rand`` streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from stsmooth.core import draws, fast

__all__ = ["GRANULARITIES", "Unit", "check_granularity", "check_probability", "draw_units", "module_tensors",
           "plan_units", "smooth_", "smooth_reference_"]

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


def _checked(teacher: Sequence[Tensor], student: Sequence[Tensor], momentum: float | Sequence[float],
             preserve_prob: float, granularity: str) -> tuple[list[float], float]:
    """The checked arguments as ``(rates, p)``: one lerp weight ``1 - m`` per teacher tensor."""
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
    return rates, preserve_prob


@dataclass(frozen=True)
class Unit:
    """How one floating tensor takes its draws.

    Attributes:
        group: index of the module group the tensor belongs to.
        source: index of the tensor whose draws it shares (itself when it draws).
    """

    group: int
    source: int


def plan_units(shapes: Sequence[torch.Size], groups: Sequence[int], is_buffer: Sequence[bool]) -> list[Unit]:
    """Decide, once, which tensor's draws each tensor follows.

    A parameter draws for itself. A buffer follows the first parameter of its group with
    its shape (BatchNorm's gamma), or, when there is none (``affine=False``), the first
    buffer of its group with its shape (running_mean), paper 003 Eq. 9.

    Args:
        shapes: shape of each floating tensor.
        groups: group (module) index of each tensor; tensors of a group are contiguous or not.
        is_buffer: whether each tensor is a buffer (running statistic) rather than a parameter.

    Returns:
        One :class:`Unit` per tensor.
    """
    first_param: dict[tuple[int, tuple[int, ...]], int] = {}
    first_buffer: dict[tuple[int, tuple[int, ...]], int] = {}
    for i, (shape, g, buf) in enumerate(zip(shapes, groups, is_buffer)):
        (first_buffer if buf else first_param).setdefault((g, tuple(shape)), i)
    units = []
    for i, (shape, g, buf) in enumerate(zip(shapes, groups, is_buffer)):
        key = (g, tuple(shape))
        # BN's statistics follow gamma; without gamma (affine=False) running_var follows
        # running_mean, so a layer's statistics are still one unit per channel / per layer.
        source = first_param.get(key, first_buffer[key]) if buf else i
        units.append(Unit(group=g, source=source))
    return units


def _default_units(n: int) -> list[Unit]:
    return [Unit(group=i, source=i) for i in range(n)]


def _rows(shape: torch.Size) -> tuple[int, tuple[int, ...]]:
    """Rows (dim 0) of a tensor, and the shape a per-row value takes to broadcast; a scalar is one row."""
    if not len(shape):
        return 1, ()
    return shape[0], (shape[0],) + (1,) * (len(shape) - 1)


def draw_units(
    shapes: Sequence[torch.Size],
    units: Sequence[Unit],
    granularity: str,
    preserve_prob: float,
    seed: int = 0,
    step: int = 0,
    device: torch.device | str = "cpu",
) -> list[Tensor]:
    """Which entries move this step (1 - P_i of Eq. 3): one word w_i per unit, moving iff w_i >= floor(p * 2**32).

    The units' (stream, counter), as tabled in :mod:`stsmooth.core.draws`:

    - ``tensor``: stream 0, counter = the source tensor's index.
    - ``layer``: stream 0, counter = the group's index.
    - ``channel``: stream 0, counter = row index in one list of rows: a block of rows per
      (group, row count) pair, in order of first appearance, laid end to end.
    - ``neuron``: stream ``1 + source index``, counter = flat element index in the source.

    Args:
        shapes: shape of each floating tensor.
        units: one :class:`Unit` per tensor, from :func:`plan_units`.
        granularity: ``"tensor"``, ``"layer"``, ``"channel"`` or ``"neuron"``.
        preserve_prob: p in [0, 1].
        seed: the run's draw seed.
        step: the update's index.
        device: where the masks are made.

    Returns:
        One bool tensor per tensor, broadcastable to its shape: ``()`` for tensor and layer,
        ``(rows, 1, ..., 1)`` for channel, the tensor's shape for neuron.
    """
    def moving(stream: int, n: int) -> Tensor:
        return draws.moves(seed, step, stream, torch.arange(n, device=device), preserve_prob)

    if granularity == "tensor":
        u = moving(draws.STREAM_SHARED, len(shapes))
        return [u[unit.source] for unit in units]
    if granularity == "layer":
        u = moving(draws.STREAM_SHARED, max((unit.group for unit in units), default=-1) + 1)
        return [u[unit.group] for unit in units]
    if granularity == "channel":
        start: dict[tuple[int, int], int] = {}
        total = 0
        for unit, shape in zip(units, shapes):
            rows, _ = _rows(shape)
            if (unit.group, rows) not in start:
                start[(unit.group, rows)], total = total, total + rows
        u = moving(draws.STREAM_SHARED, total)
        masks = []
        for unit, shape in zip(units, shapes):
            rows, view = _rows(shape)
            a = start[(unit.group, rows)]
            masks.append(u[a : a + rows].view(view))
        return masks
    check_granularity(granularity)
    moves = {src: moving(draws.neuron_stream(src), shapes[src].numel()).view(shapes[src])
             for src in dict.fromkeys(unit.source for unit in units)}
    return [moves[unit.source] for unit in units]


@torch.no_grad()
def smooth_reference_(
    teacher: Sequence[Tensor],
    student: Sequence[Tensor],
    momentum: float | Sequence[float],
    preserve_prob: float,
    granularity: str = "tensor",
    seed: int = 0,
    step: int = 0,
    units: Sequence[Unit] | None = None,
) -> None:
    """Eq. 3 as written, in place on ``teacher``: draw the units, move the drawn ones (paper 000 Eq. 3).

    The reading copy of :func:`smooth_`: plain, device-agnostic and slow (several kernels per
    tensor). With P_i in {0, 1}, ``P_i * theta_T + (1 - P_i) * lerp(theta_T, theta_S, 1 - m)``
    is a ``where``: a kept entry stays bit for bit in every dtype, a moved one is
    ``lerp(theta_T, theta_S, 1 - m)``.

    Args:
        teacher: the teacher's floating tensors, updated in place.
        student: the student's tensors, same shapes and order.
        momentum: TMA momentum m in [0, 1], or one m per tensor (as :func:`smooth_`).
        preserve_prob: preserving probability p in [0, 1].
        granularity: ``"tensor"``, ``"layer"``, ``"channel"`` or ``"neuron"``.
        seed: the run's draw seed; with ``step`` it fixes every unit's draw (:mod:`stsmooth.core.draws`).
        step: the update's index.
        units: from :func:`plan_units`; default: every tensor is its own group.
    """
    rates, preserve_prob = _checked(teacher, student, momentum, preserve_prob, granularity)
    if not teacher:
        return
    units = _default_units(len(teacher)) if units is None else units
    moves = draw_units([t.shape for t in teacher], units, granularity, preserve_prob, seed, step, teacher[0].device)
    for t, s, move, rate in zip(teacher, student, moves, rates):
        t.copy_(torch.where(move, torch.lerp(t, s.to(t.dtype), rate), t))


@torch.no_grad()
def smooth_(
    teacher: Sequence[Tensor],
    student: Sequence[Tensor],
    momentum: float | Sequence[float],
    preserve_prob: float,
    granularity: str = "tensor",
    seed: int = 0,
    step: int = 0,
    units: Sequence[Unit] | None = None,
    plan: fast.DrawPlan | None = None,
    kernel: str = "auto",
) -> None:
    """One Spatial-Temporal Smoothing step, in place on ``teacher`` (paper 000 Eq. 3).

    The numbers of :func:`smooth_reference_` for the same ``seed`` and ``step``, bit for
    bit, computed by :mod:`stsmooth.core.fast`.

    Args:
        teacher: the teacher's floating tensors, updated in place.
        student: the student's tensors, same shapes and order.
        momentum: TMA momentum m in [0, 1]; 0 gives Spatial Ensemble. Or one m per tensor:
            a tensor with m=0 takes the student's value whenever its unit is drawn, as
            ``norm="copy"`` does for BatchNorm statistics (paper 003 Table 8 "student PN").
        preserve_prob: preserving probability p in [0, 1]; 0 gives TMA.
        granularity: ``"tensor"``, ``"layer"``, ``"channel"`` or ``"neuron"``.
        seed: the run's draw seed; with ``step`` it fixes every unit's draw (:mod:`stsmooth.core.draws`).
        step: the update's index.
        units: from :func:`plan_units`; default: every tensor is its own group.
        plan: a :class:`stsmooth.core.fast.DrawPlan` of ``units`` (saves rebuilding it every step).
        kernel: ``"auto"`` (the fused Triton kernel for channel/neuron on CUDA when Triton is
            installed), ``"torch"`` (never) or ``"triton"`` (always; CPU only under ``TRITON_INTERPRET=1``).

    Example:
        >>> t, s = [torch.zeros(3)], [torch.ones(3)]
        >>> smooth_(t, s, momentum=0.9, preserve_prob=0.0)
        >>> t[0]
        tensor([0.1000, 0.1000, 0.1000])
    """
    rates, preserve_prob = _checked(teacher, student, momentum, preserve_prob, granularity)
    fast.check_kernel(kernel)
    if preserve_prob == 1.0 or not teacher:
        return
    if preserve_prob > 0.0 and plan is None:
        plan = fast.DrawPlan([t.shape for t in teacher], _default_units(len(teacher)) if units is None else units)
    fast.smooth_fast_(teacher, student, rates, preserve_prob, granularity, seed, step, plan, kernel)


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
