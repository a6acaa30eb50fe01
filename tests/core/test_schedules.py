import math

import pytest

from stsmooth.core import schedules


def test_cosine_byol():
    f = schedules.cosine(0.99, total_steps=100)
    assert f(0) == pytest.approx(0.99)
    assert f(50) == pytest.approx(1 - 0.01 * 0.5)
    assert f(100) == pytest.approx(1.0) and f(150) == pytest.approx(1.0)
    assert f(25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def test_mean_teacher_and_two_phase():
    f = schedules.mean_teacher_warmup(0.99)
    assert [f(0), f(1), f(3)] == [0.0, 0.5, 0.75]
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
