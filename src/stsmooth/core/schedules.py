"""Schedules for the momentum m, the preserving probability p and the learning rate.

Each schedule is a pure function of the global step (as DINO's and lightly's
cosine schedules are), so a resumed run recomputes exactly the same values.
Build one, then call it: ``m = cosine(0.99, total_steps=K)(k)``; the learning
rate is the same cosine to 0 after a linear :func:`warmup`
(``build("cosine", lr, K, final=0.0, warmup_steps=W, warmup_factor=0.001)``, 000 §4.1).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

Schedule = Callable[[int], float]


def _check_steps(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive whole number of steps")
    return int(value)


def constant(value: float) -> Schedule:
    """The same value at every step."""
    value = float(value)
    return lambda step: value


def cosine(base: float, final: float = 1.0, total_steps: int = 1, start_step: int = 0) -> Schedule:
    """Cosine from ``base`` at ``start_step`` to ``final`` ``total_steps`` later (held before and after).

    With ``final=1`` this is BYOL's target decay and the official STS code's:
    m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2; with ``final=0`` the usual
    learning-rate decay lr (1 + cos(pi k / K)) / 2 (000 §4.1).
    """
    total_steps = _check_steps("total_steps", total_steps)

    def value(step: int) -> float:
        k = min(max(step - start_step, 0), total_steps)
        return final - (final - base) * (math.cos(math.pi * (k / total_steps)) + 1.0) / 2.0

    return value


def mean_teacher_warmup(alpha: float) -> Schedule:
    """Mean Teacher's EMA decay warm-up: ``alpha_k = min(1 - 1/(k + 2), alpha)`` at update k (0-based).

    The authors' PyTorch release (CuriousAI/mean-teacher ``pytorch/main.py``,
    ``update_ema_variables``; ``--ema-decay`` is alpha) uses ``min(1 - 1/(global_step + 1), alpha)``
    with ``global_step`` already incremented for the current update, so its first update
    (global_step = 1) keeps half of the teacher: 1/2, 2/3, 3/4, ... The teacher is a running
    mean of the initial weights and every student so far until the decay reaches alpha.
    Paper 004 does not give this formula (§3.4 states 0.99 during the ramp-up, 0.999 after).
    """
    return lambda step: min(1.0 - 1.0 / (step + 2.0), alpha)


def two_phase(first: float, second: float, switch_step: int) -> Schedule:
    """``first`` before ``switch_step``, ``second`` from it on (paper 004 §3.4: 0.99 then 0.999)."""
    return lambda step: first if step < switch_step else second


def linear(start: float, end: float, total_steps: int) -> Schedule:
    """Linear ramp from ``start`` at step 0 to ``end`` at ``total_steps`` (then held)."""
    total_steps = _check_steps("total_steps", total_steps)
    return lambda step: start + (end - start) * min(max(step, 0), total_steps) / total_steps


def sigmoid_rampup(total_steps: int) -> Schedule:
    """Mean Teacher's consistency ramp exp(-5 (1 - t)^2), t = step / total_steps in [0, 1] (paper 004 §3)."""
    if total_steps <= 0:
        return lambda step: 1.0

    def value(step: int) -> float:
        t = min(max(step, 0), total_steps) / total_steps
        return math.exp(-5.0 * (1.0 - t) ** 2)

    return value


def step_decay(base: float, milestones: Sequence[float], factor: float = 0.1) -> Schedule:
    """``base * factor^(milestones reached)``: the learning rate / 10 at each milestone step (003 §5.3)."""
    milestones = tuple(milestones)
    return lambda step: base * factor ** sum(step >= m for m in milestones)


def fixmatch_cosine(base: float, total_steps: int) -> Schedule:
    """FixMatch's learning-rate decay ``base * cos(7 pi k / (16 K))`` (held at k = K)."""
    total_steps = _check_steps("total_steps", total_steps)
    return lambda step: base * math.cos(7.0 * math.pi * min(step, total_steps) / (16.0 * total_steps))


def warmup(after: Schedule, base: float, warmup_steps: int, start_factor: float = 0.0) -> Schedule:
    """Linear warm-up from ``start_factor * base`` at step 0 to ``base`` at ``warmup_steps``, then ``after``.

    000 §4.1: the learning rate warms up from 0.001 x lr over the first 10 epochs.
    """
    if warmup_steps <= 0:
        return after

    def value(step: int) -> float:
        if step < warmup_steps:
            return base * (start_factor + (1.0 - start_factor) * step / warmup_steps)
        return after(step)

    return value


SCHEDULES = ("constant", "cosine", "mean_teacher", "two_phase", "linear", "step", "fixmatch")


def build(name: str, value: float, total_steps: int, final: float = 1.0, switch_step: int = 0,
          warmup_steps: int = 0, warmup_factor: float = 0.0, milestones: Sequence[float] = (), key: str = "value") -> Schedule:
    """A schedule by name, as the configs name them (m, p and the learning rate).

    ``value=0`` with a schedule that leaves 0 (cosine, linear or two_phase towards a
    non-zero ``final``) warns once: m=p=0 is "no smoothing" (paper 000 Eq. 3) only while
    both stay 0, and a cosine from m_0=0 ramps m to ``final``.

    Args:
        name: one of ``SCHEDULES``.
        value: the base value (m_0, p_0, alpha, the learning rate, or the first phase's value).
        total_steps: length of the run in steps (for cosine, linear and fixmatch).
        final: the end value (cosine, linear) or the second phase's value (two_phase).
        switch_step: step of the switch for ``two_phase``.
        warmup_steps: linear warm-up steps before the schedule (:func:`warmup`); a cosine
            then runs over the remaining ``total_steps - warmup_steps``.
        warmup_factor: the warm-up starts at ``warmup_factor * value``.
        milestones: steps where ``step`` divides the value by 10.
        key: the config key of ``value``, named by the warning (e.g. ``"teacher.momentum"``).
    """
    if value == 0 and final != 0 and name in ("cosine", "linear", "two_phase"):
        warnings.warn(f"{key}={value!r} with the {name!r} schedule goes from 0 to {final!r}, so it is not "
                      f"held at 0 (m=p=0 is 'no smoothing' only with the constant schedule)", UserWarning,
                      stacklevel=2)
    if name == "constant":
        schedule = constant(value)
    elif name == "cosine":
        span = max(1, total_steps - warmup_steps) if warmup_steps > 0 else total_steps
        schedule = cosine(value, final, span, start_step=max(warmup_steps, 0))
    elif name == "mean_teacher":
        schedule = mean_teacher_warmup(value)
    elif name == "two_phase":
        schedule = two_phase(value, final, switch_step)
    elif name == "linear":
        schedule = linear(value, final, total_steps)
    elif name == "step":
        schedule = step_decay(value, milestones)
    elif name == "fixmatch":
        schedule = fixmatch_cosine(value, total_steps)
    else:
        raise ValueError(f"schedule={name!r} is not one of {', '.join(SCHEDULES)}")
    return warmup(schedule, value, warmup_steps, warmup_factor)
