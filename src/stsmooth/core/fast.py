"""The speed-ups of the rule (:func:`stsmooth.core.smoothing.smooth_`): planned draws, fused lerps, byte draws.

:func:`stsmooth.core.smoothing.smooth_reference_` states paper 000 Eq. 3 plainly; this file
computes the same numbers quickly, and is what :func:`~stsmooth.core.smoothing.smooth_` runs:

- planned draws: :class:`DrawPlan` works out once which tensors share which draws, so a
  step does no bookkeeping, and all of a step's uniforms come from one ``torch.rand``;
- fused lerps: every moving tensor goes through one ``torch._foreach_lerp_`` with a weight
  of 0 (kept) or 1 - m (moved) per entry, instead of a ``where`` per tensor;
- byte draws (neuron-wise, CPU float32): about one random byte per unit instead of a
  float uniform, in cache-sized chunks.

The draws are a pure function of the ``generator`` passed in (:class:`stsmooth.Teacher`
seeds a fresh one from (seed, step), so every rank and a resumed run draw the same);
they are those of :func:`stsmooth.core.smoothing.draw_units` (one ``torch.rand`` per step,
or per drawing tensor neuron-wise), except neuron-wise on CPU with float32 contiguous
tensors. There two 64-bit seeds from ``generator`` (one ``random_`` int64 pair) start two
NumPy SFC64 streams, ``bits`` and ``ties``. Each drawing tensor in order takes
``ceil(numel / 8)`` words of ``bits``; their little-endian bytes are the top bytes ``B``
of its units' 64-bit uniforms ``U = B << 56 | R``. A unit moves iff
``U >= floor(p * 2**64)``; only units whose ``B`` equals that threshold's top byte (1 in
256) need ``R``: the high 56 bits of the next word of ``ties``, taken in order over the
padded bytes. About one random byte per unit, and P(move) = 1 - p to within 2**-64
(p = 0.999 is honoured). Work runs in cache-sized chunks of ``CHUNK`` elements, whole
words each, so the draws do not depend on the chunking.

The kernels take one rate ``1 - m`` per tensor (the statistics of a ``norm="copy"``
teacher take rate 1 under their layer's draw). Moved entries equal ``torch.lerp(t, s, 1 - m)``
bit for bit: kept entries take a lerp weight of exactly 0 and moved ones exactly ``1 - m``
(half and bfloat16 go through ``torch.where`` instead, since their weight tensors would
round ``1 - m``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from stsmooth.core.smoothing import Unit


# Elements per chunk of the CPU neuron-wise path: the chunk's random bytes, weights and
# teacher/student slices (about 3.3 MiB) stay in cache between the passes over it, and the
# chunk is large enough to amortise the per-chunk calls (measured: 2^18 beats 2^14 and 2^16
# by 1.3-2x on ResNet-50, and equals 2^20).
CHUNK = 1 << 18


class DrawPlan:
    """Which tensors share which draws, worked out once per list of tensors.

    Build it with the teacher's tensors and their :class:`~stsmooth.core.smoothing.Unit` plans and
    pass it to :func:`~stsmooth.core.smoothing.smooth_` as ``plan`` to skip the per-step bookkeeping; it only depends on
    the tensors' shapes.

    Args:
        shapes: shape of each floating tensor.
        units: from :func:`stsmooth.core.smoothing.plan_units`.
        chunk: elements per chunk of the CPU neuron-wise path (a multiple of 8).
    """

    def __init__(self, shapes: Sequence[torch.Size], units: Sequence[Unit], chunk: int = CHUNK) -> None:
        if len(shapes) != len(units):
            raise ValueError(f"{len(shapes)} shapes but {len(units)} units")
        if chunk <= 0 or chunk % 8:
            raise ValueError(f"chunk={chunk} is not a positive multiple of 8")
        self.units = units
        self.shapes = [torch.Size(s) for s in shapes]
        n = len(units)
        self.n_groups = max((u.group for u in units), default=-1) + 1
        self.members: list[list[int]] = [[] for _ in range(self.n_groups)]
        self.followers: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            self.members[u.group].append(i)
            self.followers.setdefault(u.source, []).append(i)
        self.sources = list(self.followers)  # drawing tensors, in order of first appearance
        self.source_of = [u.source for u in units]

        # channel: one draw per (group, number of rows); tensor i reads rows [row_at[i], +rows).
        keys: dict[tuple[int, int], int] = {}
        self.row_at, self.rows, self.row_shape = [0] * n, [1] * n, [torch.Size()] * n
        for i, (u, shape) in enumerate(zip(units, self.shapes)):
            rows = shape[0] if len(shape) else 1
            if (u.group, rows) not in keys:
                keys[(u.group, rows)] = sum(r for _, r in keys)
            self.row_at[i], self.rows[i] = keys[(u.group, rows)], rows
            self.row_shape[i] = torch.Size((rows,) + (1,) * (len(shape) - 1)) if len(shape) else torch.Size()
        self.total_rows = sum(r for _, r in keys)

        # neuron (CPU): the drawing tensors' bytes laid end to end, each padded to whole 8-byte
        # words, cut into items of about `chunk` bytes; an item lists (source, start, stop, offset).
        self.items: list[tuple[int, list[tuple[int, int, int, int]]]] = []
        pieces: list[tuple[int, int, int, int]] = []
        words = 0
        for src in self.sources:
            numel = self.shapes[src].numel()
            for a in range(0, numel, chunk):
                b = min(a + chunk, numel)
                pieces.append((src, a, b, 8 * words))
                words += (b - a + 7) // 8
                if 8 * words >= chunk:
                    self.items.append((words, pieces))
                    pieces, words = [], 0
        if pieces:
            self.items.append((words, pieces))


def _exact_weight(dtype: torch.dtype) -> bool:
    # lerp with a float32/float64 weight tensor rounds like lerp with the scalar 1 - m; in
    # half/bfloat16 the weight tensor itself would be rounded, so those take torch.where.
    return dtype in (torch.float32, torch.float64)


def lerp_by_rate(teacher: Sequence[Tensor], student: Sequence[Tensor], idx: Sequence[int], rates: Sequence[float]) -> None:
    """``t_i <- lerp(t_i, s_i, rates[i])`` for ``i`` in ``idx``: one fused call per distinct rate."""
    by_rate: dict[float, list[int]] = {}
    for i in idx:
        by_rate.setdefault(rates[i], []).append(i)
    for rate, ids in by_rate.items():
        torch._foreach_lerp_([teacher[i] for i in ids], [student[i] for i in ids], rate)


def _lerp_weighted(ts: list[Tensor], ss: list[Tensor], ws: list[Tensor], rates: list[float]) -> None:
    """``t <- lerp(t, s, w)`` with ``w`` 0 (keep) or its rate (move), exactly as ``lerp(t, s, rate)``."""
    fast = [k for k, t in enumerate(ts) if _exact_weight(t.dtype) and ws[k].dtype == t.dtype]
    if len(fast) == len(ts):
        torch._foreach_lerp_(ts, ss, ws)
        return
    fast_set = set(fast)
    if fast:
        torch._foreach_lerp_([ts[k] for k in fast], [ss[k] for k in fast], [ws[k] for k in fast])
    for k, (t, s, w) in enumerate(zip(ts, ss, ws)):
        if k not in fast_set:
            t.copy_(torch.where(w != 0, torch.lerp(t, s.to(t.dtype), rates[k]), t))


def move_whole(teacher, student, plan, rates, preserve_prob, granularity, generator) -> None:
    """Tensor- and layer-wise: one uniform per tensor (or group); drawn when it is >= p."""
    device = teacher[0].device
    n = plan.n_groups if granularity == "layer" else len(teacher)
    drawn = torch.rand(n, generator=generator, device=device).ge_(preserve_prob).tolist()
    if granularity == "layer":
        idx = [i for g, d in enumerate(drawn) if d for i in plan.members[g]]
    else:
        idx = [i for i, src in enumerate(plan.source_of) if drawn[src]]
    lerp_by_rate(teacher, student, idx, rates)


def move_channels(teacher, student, plan, rates, preserve_prob, generator) -> None:
    """Channel-wise: one uniform per (group, row count) row, all in one ``torch.rand`` call."""
    device = teacher[0].device
    drawn = torch.rand(plan.total_rows, generator=generator, device=device).ge_(preserve_prob)
    weights: dict[tuple[torch.dtype, float], Tensor] = {}
    ws = []
    for i, t in enumerate(teacher):
        key = (t.dtype if _exact_weight(t.dtype) else torch.float32, rates[i])
        if key not in weights:  # copy: `drawn` (0/1 float) serves every key
            weights[key] = drawn.to(key[0], copy=True).mul_(key[1])
        a = plan.row_at[i]
        ws.append(weights[key][a : a + plan.rows[i]].view(plan.row_shape[i]))
    _lerp_weighted(list(teacher), list(student), ws, list(rates))


def move_neurons(teacher, student, plan, rates, preserve_prob, generator) -> None:
    """Neuron-wise on any device: ``torch.rand(shape) >= p`` per drawing tensor, in plan order."""
    ts, ss, ws, rs = [], [], [], []
    for src in plan.sources:
        t = teacher[src]
        drawn = torch.rand(t.shape, generator=generator, device=t.device).ge_(preserve_prob)
        dt = t.dtype if _exact_weight(t.dtype) else torch.float32
        # a follower may take another rate (copied statistics); then each rate needs its own
        # copy of the 0/1 mask, otherwise the mask itself becomes the weights
        distinct = {rates[i] for i in plan.followers[src]}
        weights = {r: drawn.to(dt, copy=len(distinct) > 1).mul_(r) for r in distinct}
        for i in plan.followers[src]:
            ts.append(teacher[i])
            ss.append(student[i])
            ws.append(weights[rates[i]])
            rs.append(rates[i])
    _lerp_weighted(ts, ss, ws, rs)


def cpu_fast_path(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> bool:
    return all(
        t.device.type == "cpu" and t.dtype == torch.float32 and s.dtype == t.dtype
        and t.is_contiguous() and s.is_contiguous()
        for t, s in zip(teacher, student)
    )


def move_neurons_cpu(teacher, student, plan, rates, preserve_prob, generator) -> None:
    """Neuron-wise on CPU (float32): 8 random bits per unit, refined on ties, in L2-sized chunks.

    Unit u draws a 64-bit uniform ``U = B << 56 | R`` and is drawn (moves) iff
    ``U >= T = floor(p * 2**64)``: ``B`` is one byte of a 64-bit word of the ``bits`` stream,
    and only the 1/256 of units with ``B == T >> 56`` need ``R`` (56 bits of a word of the
    ``ties`` stream), so the cost is about one random byte per unit and P(move) = 1 - p to
    within 2**-64.
    """
    seeds = torch.empty(2, dtype=torch.int64).random_(-(2**63), None, generator=generator).tolist()
    bits = np.random.SFC64(seeds[0] % 2**64)
    ties = np.random.SFC64(seeds[1] % 2**64)
    threshold = int(preserve_prob * 2.0**64)  # exact: p * 2**64 is a float with an integer value
    hi, lo = threshold >> 56, np.uint64(threshold & (2**56 - 1))
    size = max(8 * words for words, _ in plan.items)
    w_bufs: dict[float, tuple[Tensor, np.ndarray]] = {}  # one weight buffer per distinct rate
    moved = np.empty(size, dtype=np.bool_)
    flat_t = {i: teacher[i].view(-1) for i in range(len(teacher))}
    flat_s = {i: student[i].view(-1) for i in range(len(student))}
    for words, pieces in plan.items:
        b = bits.random_raw(words).view(np.uint8)
        n = b.size
        np.greater(b, hi, out=moved[:n])
        tie = np.flatnonzero(b == hi)
        if tie.size:
            moved[tie[(ties.random_raw(tie.size) >> np.uint64(8)) >= lo]] = True
        filled: set[float] = set()
        ts, ss, ws = [], [], []
        for src, a, z, off in pieces:
            for i in plan.followers[src]:
                rate = rates[i]
                if rate not in filled:
                    if rate not in w_bufs:
                        buf = torch.empty(size, dtype=torch.float32)
                        w_bufs[rate] = (buf, buf.numpy())
                    np.multiply(moved[:n], np.float32(rate), out=w_bufs[rate][1][:n])
                    filled.add(rate)
                ts.append(flat_t[i][a:z])
                ss.append(flat_s[i][a:z])
                ws.append(w_bufs[rate][0][off : off + z - a])
        torch._foreach_lerp_(ts, ss, ws)


def smooth_fast_(teacher: Sequence[Tensor], student: Sequence[Tensor], rates: Sequence[float], preserve_prob: float,
                 granularity: str, generator: torch.Generator | None, plan: DrawPlan | None) -> None:
    """Eq. 3 in place with ``rates[i] = 1 - m_i``, for checked arguments and ``p < 1`` (``plan`` needed when ``p > 0``)."""
    if preserve_prob == 0.0:
        # TMA: every unit moves; no draws, one fused multi-tensor kernel per rate.
        lerp_by_rate(teacher, student, range(len(teacher)), rates)
        return
    if len(plan.shapes) != len(teacher):
        raise ValueError(f"plan is for {len(plan.shapes)} tensors but teacher has {len(teacher)}")
    if granularity in ("tensor", "layer"):
        move_whole(teacher, student, plan, rates, preserve_prob, granularity, generator)
    elif granularity == "channel":
        move_channels(teacher, student, plan, rates, preserve_prob, generator)
    elif teacher[0].device.type == "cpu" and cpu_fast_path(teacher, student):
        move_neurons_cpu(teacher, student, plan, rates, preserve_prob, generator)
    else:
        move_neurons(teacher, student, plan, rates, preserve_prob, generator)
