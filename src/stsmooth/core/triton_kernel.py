"""One fused pass for channel- and neuron-wise smoothing on CUDA: hash, compare with p, lerp.

The torch path (:func:`stsmooth.core.fast.move_neurons`) makes several passes over memory
per chunk (counters, hash rounds, mask, weights, lerp). This Triton kernel reads the
teacher and student entries once and writes the teacher once, computing each entry's draw
in registers from its counter (paper 000 Eq. 3 with the counter draws of
:mod:`stsmooth.core.draws`; issue 12 item 3). One launch per tensor.

Bit for bit the torch path's numbers:

- draws: the words of :mod:`stsmooth.core.draws` in uint32 (logical shifts, wrapping
  products): the byte of ``H(ka, c >> 2)`` compared with ``T >> 24``, ties decided by
  ``H(kb, c) >> 8`` against ``T & 0xFFFFFF``;
- lerp: as ``torch.lerp`` computes it (ATen's ``lerp``): for weight ``w < 0.5``,
  ``a + w * (b - a)``, else ``b - (b - a) * (1 - w)``, each a single fused multiply-add
  ``fma(coeff, b - a, base)`` with ``coeff = w`` or ``w - 1``, as ATen's vectorised CPU
  kernel computes it (and nvcc contracts the CUDA one to); kept entries are stored unchanged.

float32 contiguous tensors only (others take the torch path). Without a GPU the kernel
runs under Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors, which is how the
tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def supports(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> bool:
    """Whether ``kernel="auto"`` runs the kernel: float32, contiguous, CUDA tensors."""
    return bool(teacher) and all(
        t.device.type == "cuda" and t.dtype == torch.float32 and s.dtype == torch.float32
        and s.device == t.device and t.is_contiguous() and s.is_contiguous()
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
    def _smooth_kernel(t_ptr, s_ptr, n, row_size, counter0, ka0, ka1, kb0, kb1, hi, lo, rate, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        # the unit's counter: its flat index (neuron, row_size 1) or its row's (channel)
        c = counter0 + offs // row_size
        byte = ((_hash(c >> 2, ka0, ka1) >> ((c & 3) * 8).to(tl.uint32)) & 0xFF).to(tl.int32, bitcast=True)
        rest = (_hash(c, kb0, kb1) >> 8).to(tl.int32, bitcast=True)
        moves = (byte > hi) | ((byte == hi) & (rest >= lo))
        a = tl.load(t_ptr + offs, mask=inside)
        b = tl.load(s_ptr + offs, mask=inside)
        w = tl.zeros((), tl.float32) + rate  # fp32 as torch rounds the scalar; also under the interpreter
        small = w < 0.5
        coeff = tl.where(small, w, w - 1.0)
        base = tl.where(small, a, b)
        lerped = tl.fma(coeff, b - a, base)
        tl.store(t_ptr + offs, tl.where(moves, lerped, a), mask=inside & moves)


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def smooth_triton_(teacher: Sequence[Tensor], student: Sequence[Tensor], plan, rates: Sequence[float],
                   preserve_prob: float, granularity: str, seed: int, step: int) -> None:
    """Channel- or neuron-wise Eq. 3 in place on ``teacher``, the numbers of the torch path.

    Args:
        teacher: float32 contiguous tensors, updated in place.
        student: same shapes, float32 contiguous.
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
        if t.dtype != torch.float32 or s.dtype != torch.float32 or not (t.is_contiguous() and s.is_contiguous()):
            raise ValueError(f"tensor {i} is {t.dtype}/{s.dtype}, contiguous={t.is_contiguous() and s.is_contiguous()};"
                             " the Triton kernel takes float32 contiguous tensors only (use kernel='torch')")
    threshold = draws.keep_threshold(preserve_prob)
    hi, lo = threshold >> 24, threshold & 0xFFFFFF
    shared = draws.step_keys(seed, step, draws.STREAM_SHARED)
    for i, (t, s) in enumerate(zip(teacher, student)):
        n = t.numel()
        if n == 0:
            continue
        if granularity == "neuron":
            keys, row_size, counter0 = draws.step_keys(seed, step, draws.neuron_stream(plan.source_of[i])), 1, 0
        else:
            keys, row_size, counter0 = shared, n // plan.rows[i], plan.row_at[i]
        (ka0, ka1), (kb0, kb1) = keys
        grid = (triton.cdiv(n, BLOCK),)
        _smooth_kernel[grid](t, s, n, row_size, counter0, _i32(ka0), _i32(ka1), _i32(kb0), _i32(kb1), hi, lo,
                             float(rates[i]), BLOCK=BLOCK)
