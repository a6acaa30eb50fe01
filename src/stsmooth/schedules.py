"""Schedules for the momentum m and the preserving probability p.

Each schedule is a pure function of the global step (as DINO's and lightly's
cosine schedules are), so a resumed run recomputes exactly the same values.
Build one, then call it: ``m = cosine(0.99, total_steps=K)(k)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

Schedule = Callable[[int], float]


def _check_steps(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive whole number of steps")
    return int(value)


def constant(value: float) -> Schedule:
    """The same value at every step."""
    value = float(value)
    return lambda step: value


def cosine(base: float, final: float = 1.0, total_steps: int = 1) -> Schedule:
    """Cosine from ``base`` at step 0 to ``final`` at ``total_steps`` (then held).

    With ``final=1`` this is BYOL's target decay and the official STS code's:
    m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2.
    """
    total_steps = _check_steps("total_steps", total_steps)

    def value(step: int) -> float:
        k = min(max(step, 0), total_steps)
        return final - (final - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0

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


SCHEDULES = ("constant", "cosine", "mean_teacher", "two_phase", "linear")


def build(name: str, value: float, total_steps: int, final: float = 1.0, switch_step: int = 0,
          key: str = "value") -> Schedule:
    """A schedule by name, as the configs name them.

    ``value=0`` with a schedule that leaves 0 (cosine, linear or two_phase towards a
    non-zero ``final``) warns once: m=p=0 is "no smoothing" (paper 000 Eq. 3) only while
    both stay 0, and a cosine from m_0=0 ramps m to ``final``.

    Args:
        name: one of ``SCHEDULES``.
        value: the base value (m_0, p_0, alpha, or the first phase's value).
        total_steps: length of the run in steps (for cosine and linear).
        final: the end value (cosine, linear) or the second phase's value (two_phase).
        switch_step: step of the switch for ``two_phase``.
        key: the config key of ``value``, named by the warning (e.g. ``"teacher.momentum"``).
    """
    if value == 0 and final != 0 and name in ("cosine", "linear", "two_phase"):
        warnings.warn(f"{key}={value!r} with the {name!r} schedule goes from 0 to {final!r}, so it is not "
                      f"held at 0 (m=p=0 is 'no smoothing' only with the constant schedule)", UserWarning,
                      stacklevel=2)
    if name == "constant":
        return constant(value)
    if name == "cosine":
        return cosine(value, final, total_steps)
    if name == "mean_teacher":
        return mean_teacher_warmup(value)
    if name == "two_phase":
        return two_phase(value, final, switch_step)
    if name == "linear":
        return linear(value, final, total_steps)
    raise ValueError(f"schedule={name!r} is not one of {', '.join(SCHEDULES)}")
