"""The rules on lists of tensors: hand-computed values and a re-derivation of Algorithm 2."""

import pytest
import torch
from torch import nn

from stsmooth.core import draws
from stsmooth.core.smoothing import (
    Unit,
    draw_units,
    module_tensors,
    plan_units,
    smooth_,
)


def words(seed, step, counters):
    """The units' uniforms w / 2**32 of core/draws.py, on Python ints (stream 0: tensor, layer, channel)."""
    keys = draws.step_keys(seed, step, draws.STREAM_SHARED)
    return [draws.word(keys, c) / 2**32 for c in counters]


def test_tma_hand_computed():
    t, s = [torch.tensor([2.0, -1.0]), torch.tensor(8.0)], [torch.tensor([4.0, 3.0]), torch.tensor(0.0)]
    smooth_(t, s, momentum=0.75, preserve_prob=0.0)
    # 0.75 * t + 0.25 * s
    assert torch.equal(t[0], torch.tensor([2.5, 0.0]))
    assert torch.equal(t[1], torch.tensor(6.0))


def test_degenerations():
    s = [torch.randn(5, 3), torch.randn(5)]
    t0 = [torch.randn(5, 3), torch.randn(5)]
    for gran in ("tensor", "layer", "channel", "neuron"):
        t = [x.clone() for x in t0]
        smooth_(t, s, momentum=0.0, preserve_prob=0.0, granularity=gran)  # p=0, m=0: copy the student
        assert all(torch.equal(a, b) for a, b in zip(t, s))
        t = [x.clone() for x in t0]
        smooth_(t, s, momentum=0.3, preserve_prob=1.0, granularity=gran, seed=0)  # p=1: unchanged
        assert all(torch.equal(a, b) for a, b in zip(t, t0))
        t = [x.clone() for x in t0]
        smooth_(t, s, momentum=0.9, preserve_prob=0.0, granularity=gran)  # p=0: TMA (Eq. 4)
        assert all(torch.allclose(a, 0.9 * b + 0.1 * c) for a, b, c in zip(t, t0, s))


def test_tensor_granularity_hand_computed():
    # The draws of a tensor-wise step with seed 3, step 0: the words of counters 0 and 1 (tensor ids).
    u = words(3, 0, [0, 1])
    p = 0.5
    t = [torch.tensor([1.0, 1.0]), torch.tensor([10.0])]
    s = [torch.tensor([3.0, 5.0]), torch.tensor([20.0])]
    smooth_(t, s, momentum=0.5, preserve_prob=p, granularity="tensor", seed=3)
    expect0 = torch.tensor([2.0, 3.0]) if u[0] >= p else torch.tensor([1.0, 1.0])
    expect1 = torch.tensor([15.0]) if u[1] >= p else torch.tensor([10.0])
    assert torch.equal(t[0], expect0) and torch.equal(t[1], expect1)


def test_se_copies_drawn_units_only():
    # SE (m=0, Eq. 2): each entry is either the teacher's or the student's, never a mixture.
    t = [torch.zeros(64, 8)]
    s = [torch.ones(64, 8)]
    smooth_(t, s, momentum=0.0, preserve_prob=0.5, granularity="neuron", seed=1)
    assert set(t[0].unique().tolist()) == {0.0, 1.0}


def algorithm2(teacher, student, m, p, draws):
    """Paper 000 Algorithm 2, tensor-wise, with the draws given."""
    out = []
    for t, s, r in zip(teacher, student, draws):
        if r < p:
            out.append(t.clone())
        else:
            out.append(m * t + (1 - m) * s)
    return out


def test_matches_algorithm2_tensorwise():
    torch.manual_seed(0)
    teacher = [torch.randn(4, 3), torch.randn(4), torch.randn(2, 2, 3)]
    student = [torch.randn_like(x) for x in teacher]
    for seed in range(10):
        u = words(seed, 0, range(3))
        expect = algorithm2(teacher, student, 0.9, 0.6, u)
        got = [x.clone() for x in teacher]
        smooth_(got, student, 0.9, 0.6, "tensor", seed)
        for a, b in zip(got, expect):
            torch.testing.assert_close(a, b)


def test_channel_rows_move_whole_and_share_across_group():
    t = [torch.zeros(50, 4, 3), torch.zeros(50)]
    s = [torch.ones(50, 4, 3), torch.ones(50)]
    units = [Unit(0, 0), Unit(0, 1)]  # a conv weight and its bias: one module
    smooth_(t, s, 0.0, 0.5, "channel", 2, units=units)
    rows = t[0].reshape(50, -1)
    assert torch.all(rows.min(1).values == rows.max(1).values)  # whole rows
    assert torch.equal(rows[:, 0], t[1])  # bias channel c moves with weight row c
    assert 0 < t[1].sum() < 50


def test_layer_moves_module_together():
    moved_together = 0
    for seed in range(40):
        t = [torch.zeros(3), torch.zeros(2), torch.zeros(4)]
        s = [torch.ones(3), torch.ones(2), torch.ones(4)]
        units = [Unit(0, 0), Unit(0, 1), Unit(1, 2)]
        smooth_(t, s, 0.0, 0.5, "layer", seed, units=units)
        assert t[0][0] == t[1][0]
        moved_together += int(t[0][0] != t[2][0])
    assert moved_together > 0  # the two groups do not always agree


@pytest.mark.parametrize("gran,units_per_step", [("tensor", 20), ("neuron", 20 * 30), ("channel", 20)])
def test_update_share_within_4_sigma(gran, units_per_step):
    p, steps = 0.7, 200
    moved = 0
    for k in range(steps):
        t = [torch.zeros(30) for _ in range(20)] if gran != "channel" else [torch.zeros(20, 3)]
        s = [torch.ones_like(x) for x in t]
        smooth_(t, s, 0.0, p, gran, k)
        if gran == "tensor":
            moved += sum(int(x[0]) for x in t)
        elif gran == "neuron":
            moved += int(sum(x.sum() for x in t))
        else:
            moved += int(t[0][:, 0].sum())
    n = steps * units_per_step
    mean, sigma = n * (1 - p), (n * p * (1 - p)) ** 0.5
    assert abs(moved - mean) < 4 * sigma


def test_draw_units_rederived():
    # a (4, 2) weight and its bias, a (3, 4) weight, a 0-dim parameter, and a buffer that
    # follows the bias (BN statistics follow gamma); a unit moves iff its uniform >= p
    shapes = [torch.Size(s) for s in ((4, 2), (4,), (3, 4), (), (4,))]
    units = [Unit(0, 0), Unit(0, 1), Unit(1, 2), Unit(2, 3), Unit(0, 1)]
    p = 0.5

    def draw(granularity):
        return draw_units(shapes, units, granularity, p, 9, 5)

    u = words(9, 5, range(5))
    assert [bool(m) for m in draw("tensor")] == [u[i] >= p for i in (0, 1, 2, 3, 1)]
    u = words(9, 5, range(3))
    assert [bool(m) for m in draw("layer")] == [u[g] >= p for g in (0, 0, 1, 2, 0)]
    u = torch.tensor(words(9, 5, range(8)), dtype=torch.float64)  # rows: group 0 (4), group 1 (3), group 2 (1)
    expect = [u[0:4].view(4, 1), u[0:4], u[4:7].view(3, 1), u[7], u[0:4]]
    assert all(torch.equal(m, e >= p) for m, e in zip(draw("channel"), expect))
    u = []
    for src, shape in enumerate(shapes[:4]):  # stream 1 + source, counter = flat index
        keys = draws.step_keys(9, 5, 1 + src)
        u.append(torch.tensor([draws.word(keys, j) / 2**32 for j in range(shape.numel())],
                              dtype=torch.float64).reshape(shape))
    expect = u + [u[1]]
    assert all(torch.equal(m, e >= p) for m, e in zip(draw("neuron"), expect))
    # not vacuous: both outcomes occur
    assert {bool(x) for m in draw("neuron") for x in m.flatten()} == {True, False}


def test_plan_units_buffers_follow_gamma():
    bn = nn.BatchNorm1d(4)
    names, tensors, units, other = module_tensors(bn)
    assert names == ["weight", "bias", "running_mean", "running_var"]
    assert [u.source for u in units] == [0, 1, 0, 0]
    assert other == ["num_batches_tracked"]
    names, _, _, other = module_tensors(bn, statistics=False)
    assert names == ["weight", "bias"] and "running_mean" in other
    assert plan_units([torch.Size([2])], [0], [True])[0].source == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("gran", ["tensor", "layer", "channel", "neuron"])
def test_per_tensor_momentum_shares_the_draws(gran, dtype):
    # One m per tensor: tensor 1 (m=0) follows tensor 0's draws (m=0.5), as copied BN
    # statistics follow gamma; from 0 towards 1 a drawn entry becomes 0.5 and 1 respectively.
    t = [torch.zeros(64, dtype=dtype), torch.zeros(64, dtype=dtype)]
    s = [torch.ones(64, dtype=dtype), torch.ones(64, dtype=dtype)]
    units = [Unit(0, 0), Unit(0, 0)]
    smooth_(t, s, [0.5, 0.0], 0.0, gran, units=units)  # p=0: every unit moves
    assert torch.equal(t[0], torch.full_like(t[0], 0.5)) and torch.equal(t[1], torch.ones_like(t[1]))
    outcomes = set()
    for seed in range(4):
        t = [torch.zeros(64, dtype=dtype), torch.zeros(64, dtype=dtype)]
        smooth_(t, s, [0.5, 0.0], 0.5, gran, seed, units=units)
        assert torch.equal(t[1], 2 * t[0])
        outcomes.update(t[1].tolist())
    assert outcomes == {0.0, 1.0}
    with pytest.raises(ValueError, match="momentum has 1 values but teacher has 2 tensors"):
        smooth_(t, s, [0.5], 0.5, gran, 0, units=units)


def _se_moved(module, granularity, seed):
    """One SE step (m=0, p=0.5) from zeros to ones on ``module``'s tensors; 1 where a unit moved."""
    names, tensors, units, _ = module_tensors(module)
    t = [torch.zeros_like(x) for x in tensors]
    smooth_(t, [torch.ones_like(x) for x in tensors], 0.0, 0.5, granularity, seed, units=units)
    return dict(zip(names, t))


@pytest.mark.parametrize("gran", ["tensor", "layer", "channel", "neuron"])
def test_batchnorm_without_affine_moves_as_one_unit(gran):
    # No gamma to follow: running_var follows running_mean's draw, so the statistics of a
    # channel (neuron, channel) or of the layer (tensor, layer) move together (paper 003 Eq. 9).
    bn = nn.BatchNorm1d(64, affine=False)
    outcomes = set()
    for seed in range(8):
        moved = _se_moved(bn, gran, seed)
        assert torch.equal(moved["running_mean"], moved["running_var"])
        outcomes.update(moved["running_mean"].tolist())
    assert outcomes == {0.0, 1.0}
    assert [u.source for u in module_tensors(bn)[2]] == [0, 0]


def test_weight_norm_is_one_layer_unit():
    # parametrizations.weight_norm moves g and v into a child module; they still belong to the
    # layer whose weight they parametrise, with its bias.
    lin = nn.utils.parametrizations.weight_norm(nn.Linear(3, 16))
    names, _, units, _ = module_tensors(lin)
    assert names == ["bias", "parametrizations.weight.original0", "parametrizations.weight.original1"]
    layer_outcomes = set()
    for seed in range(8):
        moved = _se_moved(lin, "layer", seed)
        assert len({float(x.unique()) for x in moved.values()}) == 1  # all or nothing
        layer_outcomes.add(float(moved["bias"][0]))
        # channel c: bias[c], row c of g (16, 1) and of v (16, 3) share one draw
        ch = _se_moved(lin, "channel", seed)
        g, v = ch["parametrizations.weight.original0"], ch["parametrizations.weight.original1"]
        assert torch.equal(g[:, 0], ch["bias"]) and torch.equal(v, g.expand_as(v))
        assert 0 < ch["bias"].sum() < 16
    assert layer_outcomes == {0.0, 1.0}
    assert len({u.group for u in units}) == 1


def test_convnet13_weight_norm_groups():
    from stsmooth.models.convnet13 import convnet13

    names, _, units, _ = module_tensors(convnet13(num_classes=10, weight_norm=True))
    group = dict(zip(names, (u.group for u in units)))
    fc = {group["fc.bias"], group["fc.parametrizations.weight.original0"], group["fc.parametrizations.weight.original1"]}
    assert len(fc) == 1
    assert group["conv1a.parametrizations.weight.original0"] == group["conv1a.parametrizations.weight.original1"]
    assert len(set(group.values())) == 9 + 9 + 1  # 9 convs, 9 BatchNorms, fc


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(momentum=1.5, preserve_prob=0.5), "momentum=1.5"),
        (dict(momentum=0.5, preserve_prob=-0.1), "preserve_prob=-0.1"),
        (dict(momentum=float("nan"), preserve_prob=0.5), "momentum=nan"),
        (dict(momentum=0.5, preserve_prob=0.5, granularity="pixel"), "granularity='pixel'"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        smooth_([torch.zeros(2)], [torch.ones(2)], **kwargs)
