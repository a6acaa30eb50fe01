"""The speed-ups of the rule (:func:`stsmooth.core.smoothing.smooth_`): planned draws, fused lerps, chunks.

:func:`stsmooth.core.smoothing.smooth_reference_` states paper 000 Eq. 3 plainly; this file
computes the same numbers, bit for bit, quickly; it is what :func:`~stsmooth.core.smoothing.smooth_` runs:

- planned draws: :class:`DrawPlan` works out once which tensors share which draws, so a
  step does no bookkeeping;
- counter draws (:mod:`stsmooth.core.draws`): each unit's draw is a hash of (seed, step,
  unit), so tensor- and layer-wise draws are computed on the host from Python ints (no
  device work, no sync), and channel/neuron draws need no generator state;
- fused lerps: every moving tensor goes through one ``torch._foreach_lerp_`` with a weight
  of 0 (kept) or 1 - m (moved) per entry, instead of a ``where`` per tensor;
- chunks (neuron-wise, contiguous CPU tensors): the hashes, weights and teacher/student
  slices of ``CHUNK`` units stay in cache between the passes over them, and one hash
  serves 4 units (its bytes; see :mod:`stsmooth.core.draws`); ``torch.get_num_threads()``
  threads take the chunks from a queue, each with serial torch ops;
- on CUDA, channel and neuron-wise, the fused Triton kernel of
  :mod:`stsmooth.core.triton_kernel` (one pass: hash, compare, lerp) when Triton is installed.

The kernels take one rate ``1 - m`` per tensor (the statistics of a ``norm="copy"``
teacher take rate 1 under their layer's draw). Moved entries equal ``torch.lerp(t, s, 1 - m)``
bit for bit: kept entries take a lerp weight of exactly 0 and moved ones exactly ``1 - m``
(half and bfloat16 go through ``torch.where`` instead, since their weight tensors would
round ``1 - m``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from stsmooth.core import draws

if TYPE_CHECKING:
    from stsmooth.core.smoothing import Unit


# Elements per chunk of the neuron-wise path: the chunk's hashes, weights and teacher/student
# slices stay in cache between the passes over it, and the chunk is large enough to
# amortise the per-chunk calls.
CHUNK = 1 << 18
KERNELS = ("auto", "torch", "triton")


class DrawPlan:
    """Which tensors share which draws, worked out once per list of tensors.

    Build it with the teacher's tensors and their :class:`~stsmooth.core.smoothing.Unit` plans and
    pass it to :func:`~stsmooth.core.smoothing.smooth_` as ``plan`` to skip the per-step bookkeeping; it only depends on
    the tensors' shapes.

    Args:
        shapes: shape of each floating tensor.
        units: from :func:`stsmooth.core.smoothing.plan_units`.
        chunk: elements per chunk of the neuron-wise path.
    """

    def __init__(self, shapes: Sequence[torch.Size], units: Sequence[Unit], chunk: int = CHUNK) -> None:
        if len(shapes) != len(units):
            raise ValueError(f"{len(shapes)} shapes but {len(units)} units")
        if chunk <= 0:
            raise ValueError(f"chunk={chunk} is not a positive number of elements")
        self.chunk = chunk
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



def _exact_weight(dtype: torch.dtype) -> bool:
    # lerp with a float32/float64 weight tensor rounds like lerp with the scalar 1 - m; in
    # half/bfloat16 the weight tensor itself would be rounded, so those take torch.where.
    return dtype in (torch.float32, torch.float64)


def lerp_by_rate(teacher: Sequence[Tensor], student: Sequence[Tensor], idx: Sequence[int], rates: Sequence[float]) -> None:
    """``t_i <- lerp(t_i, s_i, rates[i])`` for ``i`` in ``idx``: one fused call per distinct rate."""
    if len(idx) == len(teacher) and len(set(rates)) == 1:  # TMA's usual case: every tensor, one rate
        torch._foreach_lerp_(list(teacher), list(student), rates[0])
        return
    by_rate: dict[float, list[int]] = {}
    for i in idx:
        by_rate.setdefault(rates[i], []).append(i)
    for rate, ids in by_rate.items():
        torch._foreach_lerp_([teacher[i] for i in ids], [student[i] for i in ids], rate)


def copy_all(dst: Sequence[Tensor], src: Sequence[Tensor]) -> None:
    """``d.copy_(s)`` for each pair, in one ``torch._foreach_copy_``.

    The teacher copies some buffers each update (``num_batches_tracked``, the ``copy`` BN mode's
    statistics): 53 of them in a ResNet-50, a kernel launch each on a GPU when copied one by one.
    Pairs of other dtypes or devices are fine: the foreach op copies those one by one itself.
    """
    if dst:
        torch._foreach_copy_(list(dst), list(src))


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


def move_whole(teacher, student, plan, rates, preserve_prob, granularity, seed, step) -> None:
    """Tensor- and layer-wise: one word per tensor (or group), computed on the host; moves when >= the threshold."""
    keys = draws.step_keys(seed, step, draws.STREAM_SHARED)
    threshold = draws.keep_threshold(preserve_prob)
    if granularity == "layer":
        drawn = [draws.word(keys, g) >= threshold for g in range(plan.n_groups)]
        idx = [i for g, d in enumerate(drawn) if d for i in plan.members[g]]
    else:
        drawn_src = {src: draws.word(keys, src) >= threshold for src in plan.sources}
        idx = [i for i, src in enumerate(plan.source_of) if drawn_src[src]]
    lerp_by_rate(teacher, student, idx, rates)


def move_channels(teacher, student, plan, rates, preserve_prob, seed, step) -> None:
    """Channel-wise: one word per (group, row count) row; counters 0..total_rows-1 (see :mod:`~stsmooth.core.draws`)."""
    device = teacher[0].device
    counters = torch.arange(plan.total_rows, device=device)
    drawn = draws.moves(seed, step, draws.STREAM_SHARED, counters, preserve_prob)
    weights: dict[tuple[torch.dtype, float], Tensor] = {}
    ws = []
    for i, t in enumerate(teacher):
        key_w = (t.dtype if _exact_weight(t.dtype) else torch.float32, rates[i])
        if key_w not in weights:
            weights[key_w] = drawn.to(key_w[0]).mul_(key_w[1])
        a = plan.row_at[i]
        ws.append(weights[key_w][a : a + plan.rows[i]].view(plan.row_shape[i]))
    _lerp_weighted(list(teacher), list(student), ws, list(rates))


def _chunkable(t: Tensor, s: Tensor) -> bool:
    return (t.device.type == "cpu" and _exact_weight(t.dtype) and s.dtype == t.dtype
            and t.is_contiguous() and s.is_contiguous())


def move_neurons(teacher, student, plan, rates, preserve_prob, seed, step) -> None:
    """Neuron-wise: contiguous float32/float64 CPU tensors in chunks (:func:`_move_neurons_cpu`), others whole.

    The others (GPU tensors without Triton, half/bfloat16, non-contiguous) take each drawing
    tensor's mask from :func:`stsmooth.core.draws.moves` and a ``where`` or weighted lerp.
    """
    chunked = sys.byteorder == "little" and all(_chunkable(t, s) for t, s in zip(teacher, student))
    if chunked:
        _move_neurons_cpu(teacher, student, plan, rates, preserve_prob, seed, step)
        return
    ts, ss, ws, rs = [], [], [], []
    for src in plan.sources:
        t = teacher[src]
        counters = torch.arange(t.numel(), device=t.device).view(t.shape)
        drawn = draws.moves(seed, step, draws.neuron_stream(src), counters, preserve_prob)
        dt = t.dtype if _exact_weight(t.dtype) else torch.float32
        distinct = {rates[i] for i in plan.followers[src]}
        weights = {r: drawn.to(dt).mul_(r) for r in distinct}
        for i in plan.followers[src]:
            ts.append(teacher[i])
            ss.append(student[i])
            ws.append(weights[rates[i]])
            rs.append(rates[i])
    _lerp_weighted(ts, ss, ws, rs)


def _move_neurons_cpu(teacher, student, plan, rates, preserve_prob, seed, step) -> None:
    """Neuron-wise on CPU in chunks of ``plan.chunk`` units, shared by ``torch.get_num_threads()`` threads.

    The chunks are independent (a unit's draw is a hash of its counter), so each thread
    takes the next chunk from a queue and runs all of its passes with its own buffers and
    serial torch ops: the NumPy hashes run in parallel too (they release the GIL), and a
    thread descheduled on a busy machine only delays its own chunk, where a parallel torch
    op would make the others spin at its barrier.
    """
    threshold = draws.keep_threshold(preserve_prob)
    size = min(plan.chunk, max(teacher[src].numel() for src in plan.sources))
    size += -size % 4  # whole hashes per chunk: chunks start at multiples of 4
    tasks = []
    for src in plan.sources:
        keys = draws.step_keys(seed, step, draws.neuron_stream(src))
        numel = teacher[src].numel()
        tasks += [(src, keys, a, min(size, numel - a)) for a in range(0, numel, size)]
    tasks.sort(key=lambda task: -task[3])  # largest first, so that the threads finish together
    queue: SimpleQueue = SimpleQueue()
    for task in tasks:
        queue.put(task)
    flat = [(t.view(-1), s.view(-1)) for t, s in zip(teacher, student)]

    def work() -> None:
        chunks = _Chunks(size, threshold)
        while True:
            try:
                src, keys, a, n = queue.get_nowait()
            except Empty:
                return
            chunks.move(flat, plan.followers[src], rates, keys, a, n)

    caller_threads = torch.get_num_threads()
    n_threads = min(caller_threads, len(tasks))
    if n_threads == 1:
        work()
        return

    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()  # thread-local: passed on

    def serial_work() -> None:
        # this thread's torch ops run serially (torch keeps the intra-op thread count per
        # thread); it also sets the count that new threads start with, restored below.
        torch.set_num_threads(1)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            work()

    try:
        with ThreadPoolExecutor(n_threads) as pool:
            for future in [pool.submit(serial_work) for _ in range(n_threads)]:
                future.result()
    finally:
        torch.set_num_threads(caller_threads)  # the workers' set_num_threads(1) also set it for threads started later


class _Chunks:
    """One thread's buffers for the chunks of :func:`_move_neurons_cpu`: one hash per 4 units, bytes compared, ties refined.

    The words of :mod:`stsmooth.core.draws`: unit c's top byte is byte ``c % 4`` of
    ``H(ka, c // 4)`` (the little-endian bytes of the hashes, computed by NumPy, whose
    uint32 shifts, uint8 compares and bool-to-float products need no masks or barriers),
    and only the units whose byte equals ``T >> 24`` (1 in 256) need ``R = H(kb, c) >> 8``.
    """

    def __init__(self, size: int, threshold: int) -> None:
        self.hi, self.lo = threshold >> 24, threshold & 0xFFFFFF
        self.base = np.arange(size // 4, dtype=np.uint32)
        self.h, self.tmp = np.empty_like(self.base), np.empty_like(self.base)
        self.moved = np.empty(size, dtype=np.bool_)
        self.w_bufs: dict[tuple[torch.dtype, float], tuple[Tensor, np.ndarray]] = {}

    def move(self, flat, followers, rates, keys, a: int, n: int) -> None:
        """Units ``[a, a + n)`` of the followers' flat (teacher, student) views ``flat[i]``, drawn with ``keys``."""
        ka, kb = keys
        words = (n + 3) // 4
        draws.hash_np_(self.h[:words], ka, self.tmp[:words], a // 4, self.base[:words])
        b = self.h.view(np.uint8)[:n]
        moved = self.moved[:n]
        np.greater(b, self.hi, out=moved)
        tie = np.flatnonzero(b == self.hi)
        if tie.size:
            t32 = tie.astype(np.uint32)
            r = draws.hash_np_(np.empty_like(t32), kb, np.empty_like(t32), a, t32)
            moved[tie[(r >> np.uint32(8)) >= self.lo]] = True
        filled: dict[tuple[torch.dtype, float], Tensor] = {}
        ts, ss, ws = [], [], []
        for i in followers:
            t, s = flat[i]
            wkey = (t.dtype, rates[i])
            if wkey not in filled:
                if wkey not in self.w_bufs:
                    buf = torch.empty(len(self.moved), dtype=wkey[0])
                    self.w_bufs[wkey] = (buf, buf.numpy())
                buf, buf_np = self.w_bufs[wkey]
                np.multiply(moved, buf_np.dtype.type(wkey[1]), out=buf_np[:n])
                filled[wkey] = buf[:n]
            ts.append(t[a : a + n])
            ss.append(s[a : a + n])
            ws.append(filled[wkey])
        torch._foreach_lerp_(ts, ss, ws)


def smooth_fast_(teacher: Sequence[Tensor], student: Sequence[Tensor], rates: Sequence[float], preserve_prob: float,
                 granularity: str, seed: int, step: int, plan: DrawPlan | None, kernel: str = "auto") -> None:
    """Eq. 3 in place with ``rates[i] = 1 - m_i``, for checked arguments and ``p < 1`` (``plan`` needed when ``p > 0``).

    ``kernel``: ``"auto"`` runs the Triton kernel for channel/neuron on CUDA tensors when
    Triton is installed, ``"torch"`` never does, ``"triton"`` always does (on CPU tensors
    only under ``TRITON_INTERPRET=1``).
    """
    if preserve_prob == 0.0:
        # TMA: every unit moves; no draws, one fused multi-tensor kernel per rate.
        lerp_by_rate(teacher, student, range(len(teacher)), rates)
        return
    if len(plan.shapes) != len(teacher):
        raise ValueError(f"plan is for {len(plan.shapes)} tensors but teacher has {len(teacher)}")
    if granularity in ("tensor", "layer"):
        move_whole(teacher, student, plan, rates, preserve_prob, granularity, seed, step)
        return
    if _use_triton(kernel, teacher, student):
        from stsmooth.core import triton_kernel

        triton_kernel.smooth_triton_(teacher, student, plan, rates, preserve_prob, granularity, seed, step)
    elif granularity == "channel":
        move_channels(teacher, student, plan, rates, preserve_prob, seed, step)
    else:
        move_neurons(teacher, student, plan, rates, preserve_prob, seed, step)


def check_kernel(kernel: str) -> str:
    """Return ``kernel`` or raise naming the allowed values."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is not one of {', '.join(KERNELS)}")
    return kernel


def _use_triton(kernel: str, teacher: Sequence[Tensor], student: Sequence[Tensor]) -> bool:
    if kernel == "torch":
        return False
    if kernel == "triton":
        from stsmooth.core import triton_kernel

        if not triton_kernel.AVAILABLE:
            raise ValueError("kernel='triton' but triton is not installed; allowed without it: 'auto', 'torch'")
        return True
    if teacher[0].device.type != "cuda":  # not even an import of triton on CPU
        return False
    from stsmooth.core import triton_kernel

    return triton_kernel.AVAILABLE and triton_kernel.supports(teacher, student)
