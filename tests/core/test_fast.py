"""The speed-ups of the rule (core/fast.py): the numbers of the plain Eq. 3 path, and the CPU byte draws re-derived."""

import numpy as np
import pytest
import torch
from torch import nn

from stsmooth.core import fast
from stsmooth.core.fast import CHUNK, DrawPlan
from stsmooth.core.smoothing import Unit, module_tensors, smooth_, smooth_reference_


class Net(nn.Module):
    """Conv + BN (buffers follow gamma) + linear + a 0-dim parameter: every kind of unit."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.scale = nn.Parameter(torch.tensor(1.5))


def pair(dtype, seed=0):
    torch.manual_seed(seed)
    teacher, student = Net().to(dtype), Net().to(dtype)
    for net in (teacher, student):  # no entry equal in both: a move always shows
        net.bn.weight.data.uniform_(0.5, 1.5)
        net.bn.bias.data.normal_()
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    _, t, units, _ = module_tensors(teacher)
    _, s, _, _ = module_tensors(student)
    return t, s, units


def gen(seed):
    return torch.Generator().manual_seed(seed)


NAMES = module_tensors(Net())[0]


def copy_momenta(m):
    """One m per tensor, as ``norm="copy"`` sets them: BN statistics take m=0 under gamma's draws (003 Table 8)."""
    return [0.0 if n.startswith("bn.running") else m for n in NAMES]


CASES = [(g, dt) for g in ("tensor", "layer", "channel") for dt in (torch.float32, torch.float64, torch.bfloat16)]
# neuron-wise, float32 on CPU takes the byte draws (below); other dtypes take the torch.rand kernel
CASES += [("neuron", torch.float64), ("neuron", torch.bfloat16)]


@pytest.mark.parametrize("granularity,dtype", CASES)
@pytest.mark.parametrize("momentum,preserve_prob",
                         [(0.9, 0.3), (0.0, 0.7), (0.99, 0.0), (0.5, 1.0), ("copy", 0.3), ("copy", 0.0)])
def test_fast_equals_reference_bit_for_bit(granularity, dtype, momentum, preserve_prob):
    # "copy": one m per tensor (0.9, BN statistics 0), so a follower can take another rate than its source
    momentum = copy_momenta(0.9) if momentum == "copy" else momentum
    t, s, units = pair(dtype)
    expect = [x.clone() for x in t]
    smooth_reference_(expect, s, momentum, preserve_prob, granularity, gen(11), units)
    got = [x.clone() for x in t]
    smooth_(got, s, momentum, preserve_prob, granularity, gen(11), units)
    for a, b in zip(got, expect):
        assert a.dtype == b.dtype and torch.equal(a, b)
    if preserve_prob < 1:  # not vacuous: this seed's draws move something
        assert any(not torch.equal(a, x) for a, x in zip(got, t))


def test_neuron_float32_torch_rand_kernel_equals_reference():
    # The device-agnostic neuron kernel (GPUs, non-float32, non-contiguous) draws what the
    # reference draws; called directly here because CPU float32 takes the byte draws.
    # With one m per tensor (BN statistics at m=0 follow gamma's draws at m=0.8), as norm="copy".
    t, s, units = pair(torch.float32)
    momenta = copy_momenta(0.8)
    expect = [x.clone() for x in t]
    smooth_reference_(expect, s, momenta, 0.4, "neuron", gen(5), units)
    got = [x.clone() for x in t]
    fast.move_neurons(got, s, fast.DrawPlan([x.shape for x in t], units), [1.0 - m for m in momenta], 0.4, gen(5))
    for a, b in zip(got, expect):
        assert torch.equal(a, b)
    i = {n: k for k, n in enumerate(NAMES)}
    moved = expect[i["bn.weight"]] != t[i["bn.weight"]]
    assert 0 < moved.sum() < moved.numel()  # not vacuous
    # a drawn statistic is the student's (m=0), a kept one the teacher's, on gamma's draws
    mean = torch.where(moved, s[i["bn.running_mean"]], t[i["bn.running_mean"]])
    assert torch.equal(expect[i["bn.running_mean"]], mean)


def test_neuron_float32_byte_draws_follow_the_rule():
    # Not the reference's numbers by design: the byte draws are another random stream of the
    # same law (test_neuron_matches_rederivation pins them). What must still hold is Eq. 3 with
    # P_i in {0, 1}: every entry is the teacher's or lerp(teacher, student, 1 - m), and BN
    # statistics move exactly where their gamma does.
    t, s, units = pair(torch.float32)
    got = [x.clone() for x in t]
    smooth_(got, s, 0.8, 0.4, "neuron", gen(5), units)
    moved = []
    for a, x, y in zip(got, t, s):
        step = torch.lerp(x, y, 1.0 - 0.8)
        assert torch.all((a == x) | (a == step))
        moved.append((a == step) & (x != step))
    names = [n for n, _ in Net().named_parameters()] + ["bn.running_mean", "bn.running_var"]
    i = {n: k for k, n in enumerate(module_tensors(Net())[0])}
    assert set(i) == set(names)
    gamma = moved[i["bn.weight"]]
    assert torch.equal(moved[i["bn.running_mean"]], gamma) and torch.equal(moved[i["bn.running_var"]], gamma)
    share = torch.cat([m.flatten() for m in moved]).float().mean().item()
    assert 0.4 < share < 0.8  # 1 - p = 0.6 over ~300 units


def rederive_neuron(teacher, student, momenta, p, seed):
    """Eq. 3 neuron-wise with the CPU draws: unit u moves iff its 64-bit uniform U >= p * 2**64.

    U's top byte is one byte of the `bits` stream (each tensor takes whole 64-bit words);
    its low 56 bits come from the `ties` stream, read only where the top byte alone cannot
    decide (it equals the threshold's top byte), in order. ``momenta``: one m per tensor.
    """
    seeds = torch.empty(2, dtype=torch.int64).random_(-(2**63), None, generator=gen(seed)).tolist()
    bits, ties = np.random.SFC64(seeds[0] % 2**64), np.random.SFC64(seeds[1] % 2**64)
    threshold = int(p * 2**64)
    out = []
    for t, s, m in zip(teacher, student, momenta):
        top = bits.random_raw((t.numel() + 7) // 8).view(np.uint8)
        u = [int(b) << 56 for b in top]
        for k in np.flatnonzero(top == threshold >> 56):
            u[k] |= int(ties.random_raw()) >> 8
        moves = torch.tensor([x >= threshold for x in u[: t.numel()]]).reshape(t.shape)
        out.append(torch.where(moves, torch.lerp(t, s, 1 - m), t))
    return out


def test_neuron_matches_rederivation():
    torch.manual_seed(1)
    teacher = [torch.randn(6, 5), torch.randn(6), torch.randn(40, 50)]  # 2000 units: some ties
    student = [torch.randn_like(x) for x in teacher]
    for momentum in (0.8, [0.8, 0.0, 0.5]):  # one m, or one per tensor
        momenta = momentum if isinstance(momentum, list) else [momentum] * 3
        expect = rederive_neuron(teacher, student, momenta, 0.3, seed=7)
        got = [x.clone() for x in teacher]
        smooth_(got, student, momentum, 0.3, "neuron", gen(7))
        for a, b in zip(got, expect):
            assert torch.equal(a, b)


def test_neuron_draws_do_not_depend_on_chunking():
    torch.manual_seed(2)
    teacher = [torch.randn(37, 11), torch.randn(5), torch.randn(300)]
    student = [torch.randn_like(x) for x in teacher]
    units = [Unit(0, 0), Unit(0, 1), Unit(1, 2)]
    results = []
    for chunk in (8, 64, CHUNK):
        got = [x.clone() for x in teacher]
        plan = DrawPlan([x.shape for x in got], units, chunk=chunk)
        smooth_(got, student, 0.5, 0.6, "neuron", gen(4), plan=plan)
        results.append(got)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_high_preserve_prob_is_honoured():
    # p = 0.999 (paper 000 Fig. 3): 1e6 neuron draws, update share 1e-3 within 4 sigma.
    t, s = [torch.zeros(1_000_000)], [torch.ones(1_000_000)]
    smooth_(t, s, 0.0, 0.999, "neuron", gen(0))
    n, q = 1_000_000, 0.001
    assert abs(t[0].sum().item() - n * q) < 4 * (n * q * (1 - q)) ** 0.5
