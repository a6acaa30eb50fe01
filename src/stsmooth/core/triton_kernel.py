"""One fused pass for channel- and neuron-wise smoothing on CUDA: hash, compare with p, lerp.

The torch path (:func:`stsmooth.core.fast.move_neurons`) makes several passes over memory
per chunk (counters, hash rounds, mask, weights, lerp). This Triton kernel reads the
teacher and student entries once and writes the teacher once, computing each entry's draw
in registers from its counter (paper 000 Eq. 3 with the counter draws of
:mod:`stsmooth.core.draws`; issue 12 item 3). One launch per update for all tensors: a
program looks up its tensor's addresses in a table built once per list of tensors, and
the step's keys and rates in a small table copied to the device asynchronously.

Bit for bit the torch path's numbers:

- draws: the words of :mod:`stsmooth.core.draws` in uint32 (logical shifts, wrapping
  products): the byte of ``H(ka, c >> 2)`` compared with ``T >> 24``, ties decided by
  ``H(kb, c) >> 8`` against ``T & 0xFFFFFF``;
- lerp: as ``torch.lerp`` computes it (ATen's ``lerp``): for weight ``w < 0.5``,
  ``a + w * (b - a)``, else ``b - (b - a) * (1 - w)``, each a single fused multiply-add
  ``fma(coeff, b - a, base)`` with ``coeff = w`` or ``w - 1``, as ATen's vectorised CPU
  kernel computes it (and nvcc contracts the CUDA one to); kept entries are stored unchanged.

Speed: a full block of ``BLOCK`` entries is loaded and stored without a mask, and with
16-byte alignment declared when every tensor's address has it, so the compiler can use
128-bit loads and stores; only each tensor's last block is masked.

float32 tensors, teacher and student both contiguous or both channels-last (AMP training on
CUDA stores conv weights channels-last); others take the torch path. Without a GPU the kernel
runs under Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors, which is how the
tests check it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from stsmooth.core import draws

try:
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # optional: the torch path computes the same numbers
    AVAILABLE = False

BLOCK = 1024


def _layout(t: Tensor) -> str | None:
    """``"contiguous"``, ``"channels_last"`` (4-D, as AMP training on CUDA stores conv weights) or None."""
    if t.is_contiguous():
        return "contiguous"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return None


def _same_layout(t: Tensor, s: Tensor) -> bool:
    """Same shape and one of the two layouts for both: the entries lie in the same order in memory."""
    return t.shape == s.shape and _layout(t) is not None and _layout(t) == _layout(s)


def supports(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> bool:
    """Whether ``kernel="auto"`` runs the kernel: float32 CUDA tensors, each pair contiguous or both channels-last."""
    return bool(teacher) and all(
        t.device.type == "cuda" and t.dtype == torch.float32 and s.dtype == torch.float32
        and s.device == t.device and _same_layout(t, s)
        for t, s in zip(teacher, student)
    )


if AVAILABLE:

    @triton.jit
    def _hash(c, k0, k1):
        """H(key, c) of core/draws.py on uint32 (logical shifts, wrapping products)."""
        x = (c + k0).to(tl.uint32, bitcast=True)
        x = x ^ (x >> 16)
        x = x * tl.full((), 0x21F0AAAD, tl.uint32)
        x = (x.to(tl.int32, bitcast=True) ^ k1).to(tl.uint32, bitcast=True)
        x = x ^ (x >> 15)
        x = x * tl.full((), 0x735A2D97, tl.uint32)
        return x ^ (x >> 15)

    @triton.jit
    def _mix(a, b, w, moves):
        """Eq. 3 for one block: ``torch.lerp(a, b, w)`` where the unit moves, ``a`` where it is kept."""
        small = w < 0.5
        coeff = tl.where(small, w, w - 1.0)
        base = tl.where(small, a, b)
        return tl.where(moves, tl.fma(coeff, b - a, base), a)

    @triton.jit
    def _smooth_kernel(blocks_ptr, meta_ptr, keys_ptr, hi, lo, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
        # program -> (tensor, first entry); the tensor's addresses, size and counters; its step keys and rate
        pid = tl.program_id(0)
        tid = tl.load(blocks_ptr + 2 * pid)
        first = tl.load(blocks_ptr + 2 * pid + 1).to(tl.int32)
        t_ptr = tl.load(meta_ptr + 7 * tid).to(tl.pointer_type(tl.float32))
        s_ptr = tl.load(meta_ptr + 7 * tid + 1).to(tl.pointer_type(tl.float32))
        if ALIGNED:
            # addresses read from a table carry no alignment the compiler can see; every tensor's
            # is a multiple of 16 bytes (checked on the host), so full blocks load 4 floats at once
            t_ptr = tl.multiple_of(t_ptr, 16)
            s_ptr = tl.multiple_of(s_ptr, 16)
            first = tl.multiple_of(first, BLOCK)
        n = tl.load(meta_ptr + 7 * tid + 2).to(tl.int32)
        row_size = tl.load(meta_ptr + 7 * tid + 3).to(tl.int32)
        counter0 = tl.load(meta_ptr + 7 * tid + 4).to(tl.int32)
        inner = tl.load(meta_ptr + 7 * tid + 5).to(tl.int32)  # neuron-wise channels-last: C; else 1
        hw = tl.load(meta_ptr + 7 * tid + 6).to(tl.int32)  # neuron-wise channels-last: H * W; else 1
        ka0 = tl.load(keys_ptr + 5 * tid)
        ka1 = tl.load(keys_ptr + 5 * tid + 1)
        kb0 = tl.load(keys_ptr + 5 * tid + 2)
        kb1 = tl.load(keys_ptr + 5 * tid + 3)
        w = tl.load(keys_ptr + 5 * tid + 4).to(tl.float32, bitcast=True)  # 1 - m rounded to fp32, as torch does
        offs = first + tl.arange(0, BLOCK)
        # the unit's counter: its row-major index (neuron, row_size 1) or its row's (channel). Integer
        # divisions are slow on a GPU: each is done only where needed (the branches are per program)
        index = offs
        if inner > 1:
            # neuron-wise, channels-last: that stores (O, C, H, W) as (O, H, W, C), so offset r inside
            # row o is (h * W + w) * C + c, whose row-major index is o * C * H * W + c * H * W + h * W + w
            rs = inner * hw
            row = offs // rs
            r = offs - row * rs
            index = row * rs + (r % inner) * hw + r // inner
        if row_size > 1:  # channel-wise: the row, whichever layout (dim 0 is outermost in both)
            index = index // row_size
        c = counter0 + index
        byte = ((_hash(c >> 2, ka0, ka1) >> ((c & 3) * 8).to(tl.uint32)) & 0xFF).to(tl.int32, bitcast=True)
        rest = (_hash(c, kb0, kb1) >> 8).to(tl.int32, bitcast=True)
        moves = (byte > hi) | ((byte == hi) & (rest >= lo))
        if first + BLOCK <= n:
            # a full block: no mask, so loads and stores are wide; kept entries are written back
            # unchanged (the same bytes), which costs less than a per-entry masked store
            a = tl.load(t_ptr + offs)
            tl.store(t_ptr + offs, _mix(a, tl.load(s_ptr + offs), w, moves))
        else:
            inside = offs < n
            a = tl.load(t_ptr + offs, mask=inside)
            b = tl.load(s_ptr + offs, mask=inside)
            tl.store(t_ptr + offs, _mix(a, b, w, moves), mask=inside)


class _Tables:
    """What one update's launch reads besides the step: per program (tensor, first entry), per tensor
    (teacher and student addresses, size, entries per unit, first counter, channels-last C and H * W),
    and each tensor's draw stream.

    Built once per list of tensors (their addresses are part of the cache key) and kept on the device.
    """

    def __init__(self, teacher, student, plan, granularity: str) -> None:
        meta, blocks, self.streams = [], [], []
        for i, (t, s) in enumerate(zip(teacher, student)):
            n = t.numel()
            if granularity == "neuron":
                row_size, counter0, stream = 1, 0, draws.neuron_stream(plan.source_of[i])
            else:
                row_size, counter0, stream = n // plan.rows[i], plan.row_at[i], draws.STREAM_SHARED
            remap = granularity == "neuron" and _layout(t) == "channels_last"
            inner, hw = (t.shape[1], t.shape[2] * t.shape[3]) if remap else (1, 1)
            meta.append([t.data_ptr(), s.data_ptr(), n, max(row_size, 1), counter0, inner, hw])
            blocks.extend([i, first] for first in range(0, n, BLOCK))
            self.streams.append(stream)
        device = teacher[0].device
        #: every address a multiple of 16 bytes (fresh allocations are; views at an offset may not be)
        self.aligned = all(row[0] % 16 == 0 and row[1] % 16 == 0 for row in meta)
        self.meta = torch.tensor(meta, dtype=torch.int64, device=device)
        self.blocks = torch.tensor(blocks, dtype=torch.int64, device=device).view(-1, 2)
        self.distinct, self.index = np.unique(np.asarray(self.streams, dtype=np.int64), return_inverse=True)

    def step_table(self, seed: int, step: int, rates: Sequence[float]) -> Tensor:
        """``(T, 5)`` int32 rows ``ka0, ka1, kb0, kb1, bits of fp32(1 - m)`` for this update, on the device."""
        keys = draws.step_keys_many(seed, step, self.distinct)[self.index]
        rows = np.empty((len(self.streams), 5), dtype=np.uint32)
        rows[:, :4] = keys
        rows[:, 4] = np.asarray(rates, dtype=np.float32).view(np.uint32)
        host = torch.from_numpy(rows.view(np.int32))
        if self.meta.device.type == "cuda":  # an asynchronous copy: no wait for the GPU
            return host.pin_memory().to(self.meta.device, non_blocking=True)
        return host


_TABLES: weakref.WeakKeyDictionary[object, dict[tuple, _Tables]] = weakref.WeakKeyDictionary()


def smooth_triton_(teacher: Sequence[Tensor], student: Sequence[Tensor], plan, rates: Sequence[float],
                   preserve_prob: float, granularity: str, seed: int, step: int) -> None:
    """Channel- or neuron-wise Eq. 3 in place on ``teacher``, the numbers of the torch path.

    Args:
        teacher: float32 tensors, contiguous or channels-last, updated in place.
        student: same shapes, float32, each laid out as its teacher tensor.
        plan: the :class:`stsmooth.core.fast.DrawPlan` of the tensors.
        rates: ``1 - m`` per tensor.
        preserve_prob: p in (0, 1).
        granularity: ``"channel"`` or ``"neuron"``.
        seed: the run's draw seed.
        step: the update's index.
    """
    if not AVAILABLE:
        raise ValueError("the Triton kernel needs triton; install it or use kernel='torch'")
    if granularity not in ("channel", "neuron"):
        raise ValueError(f"granularity={granularity!r}: the Triton kernel does channel and neuron only")
    for i, (t, s) in enumerate(zip(teacher, student)):
        if t.dtype != torch.float32 or s.dtype != torch.float32 or not _same_layout(t, s):
            raise ValueError(f"tensor {i} is {t.dtype}/{s.dtype} with strides {t.stride()}/{s.stride()}; the Triton "
                             "kernel takes float32 tensors, both contiguous or both channels-last (use kernel='torch')")
    threshold = draws.keep_threshold(preserve_prob)
    hi, lo = threshold >> 24, threshold & 0xFFFFFF
    key = (granularity, tuple((t.data_ptr(), s.data_ptr(), t.numel()) for t, s in zip(teacher, student)))
    cache = _TABLES.setdefault(plan, {})
    if key not in cache:
        cache.clear()  # one list of tensors per plan at a time: a stale table would hold old addresses
        cache[key] = _Tables(teacher, student, plan, granularity)
    tables = cache[key]
    if tables.blocks.shape[0] == 0:  # all tensors empty
        return
    keys = tables.step_table(seed, step, [float(r) for r in rates])
    _smooth_kernel[(tables.blocks.shape[0],)](tables.blocks, tables.meta, keys, hi, lo, BLOCK=BLOCK,
                                               ALIGNED=tables.aligned)
