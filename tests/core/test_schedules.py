import math
import warnings

import pytest

from stsmooth.core import schedules


def test_cosine_byol():
    f = schedules.cosine(0.99, total_steps=100)
    assert f(0) == pytest.approx(0.99)
    assert f(50) == pytest.approx(1 - 0.01 * 0.5)
    assert f(100) == pytest.approx(1.0) and f(150) == pytest.approx(1.0)
    assert f(25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def _release_alphas(alpha: float, updates: int) -> list[float]:
    """The decays of CuriousAI/mean-teacher pytorch/main.py: global_step is incremented after
    optimizer.step() and before update_ema_variables, which uses min(1 - 1/(global_step + 1), alpha)."""
    global_step, out = 0, []
    for _ in range(updates):
        global_step += 1
        out.append(min(1 - 1 / (global_step + 1), alpha))
    return out


def test_mean_teacher_and_two_phase():
    f = schedules.mean_teacher_warmup(0.99)
    # our step k is the 0-based index of the update; the first one keeps half of the teacher
    assert [f(0), f(1), f(2)] == pytest.approx([1 / 2, 2 / 3, 3 / 4])
    assert [f(k) for k in range(300)] == pytest.approx(_release_alphas(0.99, 300))
    assert f(1000) == 0.99
    g = schedules.two_phase(0.99, 0.999, switch_step=10)
    assert g(9) == 0.99 and g(10) == 0.999


def test_linear_constant_sigmoid():
    f = schedules.linear(0.0, 0.7, 10)
    assert f(0) == 0.0 and f(5) == pytest.approx(0.35) and f(20) == pytest.approx(0.7)
    assert schedules.constant(0.5)(123) == 0.5
    r = schedules.sigmoid_rampup(10)
    assert r(0) == pytest.approx(math.exp(-5)) and r(10) == 1.0 and r(5) == pytest.approx(math.exp(-1.25))


def test_pure_function_of_step():
    f = schedules.cosine(0.996, total_steps=1000)
    assert [f(k) for k in (7, 500, 7)] == [f(7), f(500), f(7)]


def test_build_and_errors():
    assert schedules.build("cosine", 0.99, 10)(10) == pytest.approx(1.0)
    assert schedules.build("two_phase", 0.99, 10, final=0.999, switch_step=3)(3) == 0.999
    with pytest.raises(ValueError, match="schedule='exp'"):
        schedules.build("exp", 0.9, 10)
    with pytest.raises(ValueError, match="total_steps=0"):
        schedules.cosine(0.9, total_steps=0)


def test_learning_rate_schedules_by_hand():
    # 000 §4.1: linear warm-up from 0.001 x lr over W steps, then the cosine to 0 over the K - W others
    lr = schedules.build("cosine", 0.4, 50, final=0.0, warmup_steps=10, warmup_factor=0.001)
    assert lr(0) == pytest.approx(0.4 * 0.001)
    assert lr(5) == pytest.approx(0.4 * (0.001 + 0.999 * 5 / 10))
    assert lr(10) == pytest.approx(0.4) and lr(30) == pytest.approx(0.2) and lr(50) == pytest.approx(0.0, abs=1e-15)
    assert lr(20) == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)) / 2)
    # the warm-up hands over to any schedule at the absolute step
    step = schedules.warmup(schedules.step_decay(1.0, [20, 30]), 1.0, 10, 0.5)
    assert [step(0), step(9), step(10), step(19), step(20), step(30)] == pytest.approx([0.5, 0.95, 1, 1, 0.1, 0.01])
    fixmatch = schedules.fixmatch_cosine(0.03, 100)
    assert fixmatch(0) == 0.03 and fixmatch(100) == fixmatch(150) == pytest.approx(0.03 * math.cos(7 * math.pi / 16))
    assert schedules.build("fixmatch", 0.03, 100)(50) == pytest.approx(0.03 * math.cos(7 * math.pi / 32))
    assert schedules.build("step", 30.0, 100, milestones=[60, 80])(80) == pytest.approx(0.3)
    # a warm-up as long as the run: the cosine has one step left and is never reached
    assert schedules.build("cosine", 0.1, 5, final=0.0, warmup_steps=5, warmup_factor=0.0)(4) == pytest.approx(0.08)


@pytest.mark.parametrize("name", ["cosine", "linear", "two_phase"])
def test_schedule_leaving_zero_warns(name):
    # m=0 (or p=0) is only held at 0 by the constant schedule: cosine 0 -> 1 smooths (issue 8).
    with pytest.warns(UserWarning, match=rf"teacher.momentum=0.0 with the '{name}' schedule goes from 0 to 1.0"):
        f = schedules.build(name, 0.0, 10, final=1.0, switch_step=3, key="teacher.momentum")
    assert f(0) == 0.0 and f(10) == 1.0


@pytest.mark.parametrize(
    "name,value,final", [("constant", 0.0, 1.0), ("cosine", 0.0, 0.0), ("cosine", 0.99, 1.0),
                         ("linear", 0.0, 0.0), ("mean_teacher", 0.99, 1.0)],
)
def test_schedule_held_or_not_from_zero_is_silent(name, value, final):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedules.build(name, value, 10, final=final, key="teacher.momentum")
