"""Counter-based draws: each unit's Bernoulli draw is a pure function of (seed, step, unit).

Paper 000 Eq. 3 draws ``P_i ~ Ber(p)`` per unit and step. Here the draw of unit ``i`` at
``step`` is a hash of ``(seed, step, i)``, not the next number of a stream, so a rank, a
shard of a tensor (FSDP), a resumed run or a GPU kernel computes the draws of exactly its
own units, with no communication and without generating anyone else's (issue 12).

The hash ``H(key, c)`` of a 32-bit counter ``c`` (all arithmetic on unsigned 32-bit
words, mod ``2**32``)::

    x = c + k0
    x ^= x >> 16;  x *= 0x21F0AAAD
    x ^= k1
    x ^= x >> 15;  x *= 0x735A2D97
    x ^= x >> 15                                   # H(key, c) = x

C. Wellons' ``lowbias32`` (hash-prospector, constants 0x21f0aaad / 0x735a2d97, shifts
16/15/15) with the second key word xored in after the first round, so it depends on all
64 bits of the key. Two keys per (seed, step, stream), ``ka, kb = step_keys(...)``
(a splitmix64 chain on Python ints). A unit's 32-bit word is::

    B = (H(ka, c >> 2) >> (8 * (c & 3))) & 0xFF    # byte c % 4 of the hash of c // 4
    R = H(kb, c) >> 8                              # 24 more bits, needed only on ties
    w = B << 24 | R
    keep  iff  w <  T = keep_threshold(p) = floor(p * 2**32)
    moves iff  w >= T

so the CPU path hashes one word per 4 units, compares bytes with ``T >> 24``, and hashes
``R`` only for the 1/256 of units whose byte ties (as 0.1's byte streams did). Resolution:
32 bits; P(keep) = T / 2**32, within 2**-32 of p (p = 0.999 is honoured to 2.3e-10).

Torch has no unsigned 32-bit shifts, so :func:`hash_` works on int32 tensors holding the
same bit patterns: multiplication and addition wrap (two's complement), and the
arithmetic right shifts are masked to act as logical ones. The Triton kernel
(:mod:`stsmooth.core.triton_kernel`) computes the same words in uint32.

Global unit index (``stream``, ``counter``) per granularity, over the plan of
:func:`stsmooth.core.smoothing.module_tensors` / :class:`stsmooth.core.fast.DrawPlan`
(tensor ids are positions in that list; a follower -- a BatchNorm statistic -- uses
its source's draws, ``Unit.source``):

==========  ==========================  ============================================
granularity  stream                      counter
==========  ==========================  ============================================
tensor       ``STREAM_SHARED`` (0)       the source tensor id ``Unit.source``
layer        ``STREAM_SHARED`` (0)       the group id ``Unit.group``
channel      ``STREAM_SHARED`` (0)       ``DrawPlan.row_at[i] + r`` for row ``r`` (dim 0)
                                         of tensor ``i``: the (group, row count) blocks
                                         of rows laid end to end
neuron       ``1 + source tensor id``    the flat (row-major) element index ``j`` in the
                                         full, unsharded source tensor
==========  ==========================  ============================================

So a shard holding rows ``[a, b)`` of tensor ``i`` (row size ``R`` elements) draws
``counter = arange(a * R, b * R)`` neuron-wise and ``row_at[i] + arange(a, b)``
channel-wise. Counters must be below ``2**31``.

Changed in 0.2: the draws of 0.1 came from ``torch.rand`` / NumPy streams seeded per step,
so the same seed draws other units than in 0.1 (the law is the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["STREAM_SHARED", "hash32", "hash_", "hash_np_", "keep", "keep_threshold", "moves", "neuron_stream", "step_keys",
           "step_keys_many", "unit_bits", "unit_uniforms", "word"]

STREAM_SHARED = 0  # tensor, layer and channel draws; neuron-wise tensors take 1 + their id

_M64 = (1 << 64) - 1
_C1 = 0x21F0AAAD
_C2 = 0x735A2D97
_MAX_COUNTER = 1 << 31


def _mix64(z: int) -> int:
    """splitmix64's finaliser (Steele, Lea, Flood 2014) on a 64-bit word."""
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def step_keys(seed: int, step: int, stream: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The keys ``ka, kb`` of one (seed, step, stream), each two 32-bit words ``(k0, k1)`` as Python ints."""
    if step < 0 or stream < 0:
        raise ValueError(f"step={step} and stream={stream} must be >= 0")
    z = _mix64(seed ^ _mix64(step + 0x9E3779B97F4A7C15 * (_mix64(stream) | 1)))
    z2 = _mix64(z ^ 0xD6E8FEB86659FD93)
    return (z & 0xFFFFFFFF, z >> 32), (z2 & 0xFFFFFFFF, z2 >> 32)


def _mix64_np(z: np.ndarray) -> np.ndarray:
    """:func:`_mix64` on a uint64 array (NumPy's uint64 array products wrap modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def step_keys_many(seed: int, step: int, streams: Sequence[int]) -> np.ndarray:
    """:func:`step_keys` for many streams at once: ``(len(streams), 4)`` uint32 rows ``ka0, ka1, kb0, kb1``.

    The same integers as one :func:`step_keys` call per stream, in one vectorised pass (the
    fused kernel needs the keys of every neuron-wise tensor at every update).
    """
    s = np.asarray(streams, dtype=np.int64)
    if step < 0 or (s.size and s.min() < 0):
        raise ValueError(f"step={step} and streams (min {s.min() if s.size else 0}) must be >= 0")
    with np.errstate(over="ignore"):
        odd = _mix64_np(s.astype(np.uint64)) | np.uint64(1)
        z = _mix64_np(np.uint64(seed & _M64) ^ _mix64_np(np.uint64(step & _M64) + np.uint64(0x9E3779B97F4A7C15) * odd))
        z2 = _mix64_np(z ^ np.uint64(0xD6E8FEB86659FD93))
    low, high = np.uint64(0xFFFFFFFF), np.uint64(32)
    return np.stack([z & low, z >> high, z2 & low, z2 >> high], axis=1).astype(np.uint32)


def neuron_stream(source: int) -> int:
    """The stream of a neuron-wise drawing tensor (its id in the plan)."""
    return 1 + source


def _i32(v: int) -> int:
    """A 32-bit word as the signed int32 with the same bits."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def keep_threshold(p: float) -> int:
    """``floor(p * 2**32)``: a unit keeps its value (P_i = 1) iff its word is below it."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"preserve_prob={p!r} is outside the allowed range [0, 1]")
    return min(int(p * 4294967296.0), 1 << 32)  # exact: p * 2**32 is a float with integer part


def _xorshift_(x: Tensor, shift: int, tmp: Tensor) -> None:
    """``x ^= x >>> shift`` (logical) on int32 bit patterns; ``tmp`` is scratch of x's size."""
    torch.bitwise_right_shift(x, shift, out=tmp)
    tmp.bitwise_and_((1 << (32 - shift)) - 1)
    x.bitwise_xor_(tmp)


def hash_(x: Tensor, key: tuple[int, int], tmp: Tensor | None = None, offset: int = 0,
          base: Tensor | None = None) -> Tensor:
    """In place: int32 ``x`` holding counters becomes ``H(key, counter)`` (as int32 bit patterns).

    Args:
        x: int32 counters, any shape; overwritten. With ``base``, x's content is ignored.
        key: ``ka`` or ``kb`` from :func:`step_keys`.
        tmp: optional int32 scratch tensor of x's shape.
        offset: added to every counter (a chunk's first counter when ``base`` is an arange).
        base: int32 counters to read instead of x (x's shape); saves a copy.

    Returns:
        ``x``.
    """
    tmp = torch.empty_like(x) if tmp is None else tmp
    if base is None:
        x.add_(_i32(key[0] + offset))
    else:
        torch.add(base, _i32(key[0] + offset), out=x)
    _xorshift_(x, 16, tmp)
    x.mul_(_C1)
    x.bitwise_xor_(_i32(key[1]))
    _xorshift_(x, 15, tmp)
    x.mul_(_C2)
    _xorshift_(x, 15, tmp)
    return x


def hash_np_(x: np.ndarray, key: tuple[int, int], tmp: np.ndarray, offset: int, base: np.ndarray) -> np.ndarray:
    """:func:`hash_` on NumPy uint32 arrays (CPU): ``x = H(key, base + offset)``.

    NumPy has logical shifts on uint32 (no masks) and runs single-threaded, so a busy
    machine does not stall it at thread barriers as it does torch's small parallel ops.
    """
    np.add(base, np.uint32((key[0] + offset) & 0xFFFFFFFF), out=x)
    np.right_shift(x, np.uint32(16), out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    np.multiply(x, np.uint32(_C1), out=x)
    np.bitwise_xor(x, np.uint32(key[1]), out=x)
    np.right_shift(x, np.uint32(15), out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    np.multiply(x, np.uint32(_C2), out=x)
    np.right_shift(x, np.uint32(15), out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    return x


def hash32(key: tuple[int, int], counter: int) -> int:
    """``H(key, counter)`` on Python ints."""
    x = (counter + key[0]) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * _C1) & 0xFFFFFFFF
    x ^= key[1]
    x ^= x >> 15
    x = (x * _C2) & 0xFFFFFFFF
    return x ^ (x >> 15)


def word(keys: tuple[tuple[int, int], tuple[int, int]], counter: int) -> int:
    """One unit's word ``w`` in [0, 2**32) on Python ints (no tensor, no device); ``keys`` from :func:`step_keys`."""
    ka, kb = keys
    byte = (hash32(ka, counter >> 2) >> (8 * (counter & 3))) & 0xFF
    return byte << 24 | hash32(kb, counter) >> 8


def _counters(counter: Tensor) -> Tensor:
    if counter.dtype.is_floating_point or counter.dtype == torch.bool or counter.is_complex():
        raise ValueError(f"counter has dtype {counter.dtype}; allowed: an integer tensor")
    # checked on CPU only: on a GPU the check would be a host sync every step
    if counter.device.type == "cpu" and counter.numel() and (int(counter.min()) < 0 or int(counter.max()) >= _MAX_COUNTER):
        raise ValueError(f"counters must lie in [0, 2**31); got [{int(counter.min())}, {int(counter.max())}]")
    return counter.to(torch.int64)


def _u32(x: Tensor) -> Tensor:
    return x.to(torch.int64) & 0xFFFFFFFF


def unit_bits(seed: int, step: int, stream: int, counter: Tensor) -> Tensor:
    """The 32-bit word ``w`` of each unit, as int64 values in [0, 2**32).

    Args:
        seed: the run's draw seed (any int; taken mod 2**64).
        step: the update's index (0 for the first update).
        stream: see the table in the module docstring.
        counter: integer tensor of unit counters in [0, 2**31), any shape and device.

    Returns:
        int64 tensor of counter's shape.
    """
    c = _counters(counter)
    ka, kb = step_keys(seed, step, stream)
    byte = (_u32(hash_((c >> 2).to(torch.int32), ka)) >> ((c & 3) * 8)) & 0xFF
    return byte << 24 | _u32(hash_(c.to(torch.int32), kb)) >> 8


def unit_uniforms(seed: int, step: int, stream: int, counter: Tensor) -> Tensor:
    """Each unit's uniform ``u = w / 2**32`` in [0, 1) (float64, exact); it keeps iff ``u < p``
    up to the 32-bit resolution of :func:`keep_threshold`."""
    return unit_bits(seed, step, stream, counter).double() / 4294967296.0


def moves(seed: int, step: int, stream: int, counter: Tensor, p: float) -> Tensor:
    """Whether each unit moves (P_i = 0 in paper 000 Eq. 3): its word >= floor(p * 2**32)."""
    return unit_bits(seed, step, stream, counter) >= keep_threshold(p)


def keep(seed: int, step: int, stream: int, counter: Tensor, p: float) -> Tensor:
    """Whether each unit keeps its value (P_i = 1 in paper 000 Eq. 3); ``~moves(...)``."""
    return ~moves(seed, step, stream, counter, p)
