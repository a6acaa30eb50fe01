"""Plain EMA teachers against the references users know, over real SGD training with BatchNorm.

- EMAN (amazon-science/exponential-moving-average-normalization, ``models/byol.py``
  ``BYOLEMAN.momentum_update``, ``models/moco.py`` ``MoCoEMAN._momentum_update_key_encoder``,
  ``models/fixmatch.py`` ``momentum_update_ema``): every entry of the state dict —
  parameters AND BatchNorm running statistics — is EMA'd with the step's m, except
  ``num_batches_tracked``, which is copied. Re-derived below as ``ref_eman_update``.
- ``torch.optim.swa_utils.AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(m),
  use_buffers=True)``: EMA of parameters and buffers.

``Teacher(student, momentum=m, preserve_prob=0, norm="eman")`` must match both on the
floating tensors to float32 rounding: ``m t + (1 - m) s`` and a lerp round differently
(on torch 2.13 CPU we happen to be bit-identical to ``AveragedModel``; the test does not
rely on it).
"""

import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from stsmooth.core.teacher import Teacher


def ref_eman_update(ema_state, student_state, m):
    """EMAN release's ``momentum_update`` over the state dict, restated (not copied)."""
    for name, s in student_state.items():
        if "num_batches_tracked" in name:
            ema_state[name] = s.clone()
        else:
            ema_state[name] = ema_state[name] * m + (1.0 - m) * s


def small_bn_net():
    """Conv + BN2d + Linear + BN1d: parameters and running statistics in two kinds of layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3),
    )


def sgd_steps(student, n_steps, after_step):
    """``n_steps`` of SGD with momentum on fixed random batches; ``after_step(t)`` after each."""
    opt = torch.optim.SGD(student.parameters(), lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    student.train()
    for t in range(n_steps):
        x = torch.randn(8, 2, 5, 5, generator=g) * 2 + 0.5  # BN statistics far from (0, 1)
        y = torch.randint(0, 3, (8,), generator=g)
        loss = nn.functional.cross_entropy(student(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after_step(t)


def assert_states_close(teacher_state, ref_state, floating_only=False):
    for name, ref in ref_state.items():
        ours = teacher_state[name]
        if ref.is_floating_point():
            torch.testing.assert_close(ours, ref, msg=lambda m, name=name: f"{name}: {m}")
        elif not floating_only:
            assert torch.equal(ours, ref), name


def moved(state, student_state):
    """The check is meaningful only if the EMA lags the student in parameters and statistics."""
    return {n for n, v in state.items() if v.is_floating_point() and not torch.allclose(v, student_state[n])}


@pytest.mark.parametrize("schedule", ["constant", "byol_cosine"])
def test_eman_teacher_matches_the_release_state_dict_update(schedule):
    """Constant m = 0.9, and BYOL-EMAN's ramp m_t = 1 - (1 - m0)(cos(pi t / T) + 1) / 2."""
    student = small_bn_net()
    teacher = Teacher(student, momentum=0.9, preserve_prob=0.0, norm="eman", seed=0)
    ref = {k: v.clone() for k, v in student.state_dict().items()}  # the release copies at build
    n_steps = 30

    def momentum(t):
        return 0.9 if schedule == "constant" else 1 - (1 - 0.9) * (math.cos(math.pi * t / n_steps) + 1) / 2

    def after_step(t):
        teacher.update(student, momentum=momentum(t))
        ref_eman_update(ref, student.state_dict(), momentum(t))

    sgd_steps(student, n_steps, after_step)
    state = teacher.module.state_dict()
    assert_states_close(state, ref)
    assert int(state["1.num_batches_tracked"]) == n_steps  # copied, not averaged
    lagging = moved(state, student.state_dict())
    assert {"0.weight", "1.running_mean", "1.running_var", "6.running_mean", "6.running_var"} <= lagging


@pytest.mark.parametrize("m", [0.9, 0.99])
def test_eman_teacher_matches_averaged_model_ema(m):
    """Our p = 0 EMAN teacher vs ``AveragedModel(..., get_ema_multi_avg_fn(m), use_buffers=True)``.

    Alignment: ``AveragedModel`` starts as a deepcopy, and its FIRST ``update_parameters``
    copies the model instead of averaging (``n_averaged == 0``). Our ``Teacher`` is a copy of
    the student at construction and averages from its first ``update``. So we call
    ``update_parameters`` once right after construction (a copy of the same untrained
    student, i.e. exactly our construction), and then both update after every SGD step.
    Without that call the averaged model would equal the student after step 1 — shown
    at the end, so the alignment is not hiding a difference that matters.

    ``num_batches_tracked`` is left out of the comparison: ``get_ema_multi_avg_fn`` puts the
    int64 counter through ``m c + (1 - m) s`` and truncates it (after 50 steps it reads 40
    at m = 0.9 and 0 at m = 0.99), where EMAN (and we) copy it. It matters only to a
    BatchNorm with ``momentum=None`` (cumulative average).
    """
    student = small_bn_net()
    teacher = Teacher(student, momentum=m, preserve_prob=0.0, norm="eman", seed=0)
    averaged = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(m), use_buffers=True)
    averaged.update_parameters(student)  # n_averaged 0 -> 1: a copy, as our construction
    unaligned = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(m), use_buffers=True)

    def after_step(t):
        teacher.update(student)
        averaged.update_parameters(student)
        unaligned.update_parameters(student)

    sgd_steps(student, 50, after_step)
    state = teacher.module.state_dict()
    assert_states_close(state, averaged.module.state_dict(), floating_only=True)
    assert int(state["1.num_batches_tracked"]) == 50
    lagging = moved(state, student.state_dict())
    assert {"0.weight", "1.running_mean", "1.running_var", "6.running_mean", "6.running_var"} <= lagging
    # The unaligned peer started from the student after step 1: still outside the tolerance.
    with pytest.raises(AssertionError):
        assert_states_close(state, unaligned.module.state_dict(), floating_only=True)
