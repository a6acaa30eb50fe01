"""Counter-based draws: each unit's Bernoulli draw is a pure function of (seed, step, unit).

Paper 000 Eq. 3 draws ``P_i ~ Ber(p)`` per unit and step. Here the draw of unit ``i`` at
``step`` is a hash of ``(seed, step, i)``, not the next number of a stream, so a rank, a
shard of a tensor (FSDP), a resumed run or a GPU kernel computes the draws of exactly its
own units, with no communication and without generating anyone else's (issue 12).

The draw (all arithmetic on unsigned 32-bit words, mod ``2**32``)::

    k0, k1 = step_key(seed, step, stream)          # 64-bit splitmix64 chain, in Python
    x = counter + k0
    x ^= x >> 16;  x *= 0x21F0AAAD
    x ^= k1
    x ^= x >> 15;  x *= 0x735A2D97
    x ^= x >> 15
    w = x ^ 0x80000000                             # w: the unit's 32-bit uniform word
    keep  iff  w <  keep_threshold(p) = floor(p * 2**32)
    moves iff  w >= keep_threshold(p)

The mixer is C. Wellons' ``lowbias32`` (hash-prospector, constants 0x21f0aaad /
0x735a2d97, shifts 16/15/15) with the second key word xored in after the first round, so
the draw depends on all 64 bits of the step key. Resolution: 32 bits; P(keep) =
floor(p * 2**32) / 2**32, within 2**-32 of p (p = 0.999 is honoured to 2.3e-10).

Torch has no unsigned 32-bit shifts or compares, so :func:`bits_` works on int32 tensors
holding the same bit patterns: multiplication and addition wrap (two's complement), and
the arithmetic right shifts are masked to act as logical ones. The last xor with the sign
bit is why ``w`` is the word: read as a signed int32, ``x`` equals ``w - 2**31``, so
``w >= T`` is the signed compare ``x >= T - 2**31`` with no extra pass. The Triton kernel
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

import torch
from torch import Tensor

__all__ = ["STREAM_SHARED", "bits_", "keep", "keep_threshold", "moves", "moves_from_bits", "neuron_stream",
           "signed_threshold", "step_key", "unit_bits", "unit_uniforms", "word"]

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


def step_key(seed: int, step: int, stream: int) -> tuple[int, int]:
    """The two 32-bit key words ``(k0, k1)`` of one (seed, step, stream), as Python ints in [0, 2**32)."""
    if step < 0 or stream < 0:
        raise ValueError(f"step={step} and stream={stream} must be >= 0")
    z = _mix64(seed ^ _mix64(step + 0x9E3779B97F4A7C15 * (_mix64(stream) | 1)))
    return z & 0xFFFFFFFF, z >> 32


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


def bits_(x: Tensor, key: tuple[int, int], tmp: Tensor | None = None, offset: int = 0,
          base: Tensor | None = None) -> Tensor:
    """In place: int32 ``x`` holding counters becomes their hashes ``x`` of the recipe (int32 bits).

    The word is ``w = x ^ 0x80000000``; as a signed int32, ``x = w - 2**31``.

    Args:
        x: int32 counters, any shape; overwritten. With ``base``, x's content is ignored.
        key: ``(k0, k1)`` from :func:`step_key`.
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


def word(key: tuple[int, int], counter: int) -> int:
    """One unit's word ``w`` in [0, 2**32), on Python ints (no tensor, no device): the recipe above."""
    x = (counter + key[0]) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * _C1) & 0xFFFFFFFF
    x ^= key[1]
    x ^= x >> 15
    x = (x * _C2) & 0xFFFFFFFF
    x ^= x >> 15
    return x ^ 0x80000000


def _counters(counter: Tensor) -> Tensor:
    if counter.dtype.is_floating_point or counter.dtype == torch.bool or counter.is_complex():
        raise ValueError(f"counter has dtype {counter.dtype}; allowed: an integer tensor")
    # checked on CPU only: on a GPU the check would be a host sync every step
    if counter.device.type == "cpu" and counter.numel() and (int(counter.min()) < 0 or int(counter.max()) >= _MAX_COUNTER):
        raise ValueError(f"counters must lie in [0, 2**31); got [{int(counter.min())}, {int(counter.max())}]")
    return counter.to(torch.int32, copy=True)


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
    x = bits_(_counters(counter), step_key(seed, step, stream))
    return x.to(torch.int64) + (1 << 31)


def unit_uniforms(seed: int, step: int, stream: int, counter: Tensor) -> Tensor:
    """Each unit's uniform ``u = w / 2**32`` in [0, 1) (float64, exact); it keeps iff ``u < p``
    up to the 32-bit resolution of :func:`keep_threshold`."""
    return unit_bits(seed, step, stream, counter).double() / 4294967296.0


def signed_threshold(threshold: int) -> int | None:
    """``threshold - 2**31``: the signed-int32 bound that hashes ``x`` (of :func:`bits_`) compare with;
    ``None`` when nothing moves (p = 1)."""
    return None if threshold >= 1 << 32 else threshold - (1 << 31)


def moves_from_bits(x: Tensor, threshold: int) -> Tensor:
    """Bool mask of the hashes ``x`` (of :func:`bits_`) whose words are >= ``threshold``."""
    bound = signed_threshold(threshold)
    if bound is None:
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    return x.ge(bound)


def moves(seed: int, step: int, stream: int, counter: Tensor, p: float) -> Tensor:
    """Whether each unit moves (P_i = 0 in paper 000 Eq. 3): its word >= floor(p * 2**32)."""
    x = bits_(_counters(counter), step_key(seed, step, stream))
    return moves_from_bits(x, keep_threshold(p))


def keep(seed: int, step: int, stream: int, counter: Tensor, p: float) -> Tensor:
    """Whether each unit keeps its value (P_i = 1 in paper 000 Eq. 3); ``~moves(...)``."""
    return ~moves(seed, step, stream, counter, p)
