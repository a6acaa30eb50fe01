"""The learning rate of a run (training/optim.py): warm-up, cosine, step and FixMatch decays."""

import math

import pytest

from stsmooth.training import config, optim


def test_learning_rate_warmup_then_cosine():
    cfg = config.load(overrides=["optim.lr=0.4", "optim.epochs=10", "optim.warmup_epochs=2"]).optim
    lr_at = optim.lr_schedule(cfg, 5)
    lr = [lr_at(k) for k in range(50)]
    assert lr[0] == pytest.approx(0.4 * 0.001)  # 000 §4.1: warm-up from 0.001 x lr
    assert lr[10] == pytest.approx(0.4)  # end of warm-up
    assert all(a <= b for a, b in zip(lr[:10], lr[1:11])) and all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert lr_at(30) == pytest.approx(0.2)  # half-way through the cosine
    assert lr_at(50) == pytest.approx(0.0, abs=1e-12)
    step = config.load(overrides=["optim.schedule=step", "optim.milestones=[6,8]", "optim.warmup_epochs=0",
                                  "optim.epochs=10"]).optim
    assert [optim.lr_schedule(step, 5)(k * 5) for k in (5, 6, 8)] == pytest.approx([0.1, 0.01, 0.001])
    fm = config.load(overrides=["optim.schedule=fixmatch", "optim.warmup_epochs=0", "optim.epochs=4"]).optim
    assert optim.lr_schedule(fm, 5)(20) == pytest.approx(0.1 * math.cos(7 * math.pi / 16))
