"""The speed-ups of the rule (core/fast.py): the numbers of the plain Eq. 3 path, bit for bit, and the counter draws re-derived."""

import threading

import pytest
import torch
from torch import nn

from stsmooth.core import draws, fast
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


NAMES = module_tensors(Net())[0]


def copy_momenta(m):
    """One m per tensor, as ``norm="copy"`` sets them: BN statistics take m=0 under gamma's draws (003 Table 8)."""
    return [0.0 if n.startswith("bn.running") else m for n in NAMES]


CASES = [(g, dt) for g in ("tensor", "layer", "channel", "neuron")
         for dt in (torch.float32, torch.float64, torch.bfloat16)]


@pytest.mark.parametrize("granularity,dtype", CASES)
@pytest.mark.parametrize("momentum,preserve_prob",
                         [(0.9, 0.3), (0.0, 0.7), (0.3, 0.5), (0.99, 0.0), (0.5, 1.0), ("copy", 0.3), ("copy", 0.0)])
def test_fast_equals_reference_bit_for_bit(granularity, dtype, momentum, preserve_prob):
    # "copy": one m per tensor (0.9, BN statistics 0), so a follower can take another rate than its source;
    # m = 0.3 and 0 take lerp's weight >= 0.5 branch
    momentum = copy_momenta(0.9) if momentum == "copy" else momentum
    t, s, units = pair(dtype)
    expect = [x.clone() for x in t]
    smooth_reference_(expect, s, momentum, preserve_prob, granularity, 11, 4, units)
    got = [x.clone() for x in t]
    smooth_(got, s, momentum, preserve_prob, granularity, 11, 4, units)
    for a, b in zip(got, expect):
        assert a.dtype == b.dtype and torch.equal(a, b)
    if preserve_prob < 1:  # not vacuous: this seed's draws move something
        assert any(not torch.equal(a, x) for a, x in zip(got, t))
    if 0 < preserve_prob < 1:  # ... and keep something
        assert any(torch.equal(a, x) for a, x in zip(got, t)) or granularity in ("channel", "neuron")
        assert any(bool((a == x).any()) for a, x in zip(got, t))


def test_neuron_non_contiguous_tensors_take_the_same_draws():
    # a transposed (non-contiguous) teacher tensor takes the whole-tensor where; its units are
    # still indexed by the flat row-major index of its logical shape
    torch.manual_seed(3)
    t = [torch.randn(7, 9).t(), torch.randn(20)]
    s = [torch.randn(9, 7), torch.randn(20)]
    expect = [x.clone() for x in t]
    smooth_reference_(expect, s, 0.6, 0.5, "neuron", 2, 8)
    got = [x.clone() for x in t]
    smooth_(got, s, 0.6, 0.5, "neuron", 2, 8)
    assert all(torch.equal(a, b) for a, b in zip(got, expect))
    assert not got[0].is_contiguous()


def rederive_neuron(teacher, student, momenta, p, seed, step, sources):
    """Eq. 3 neuron-wise from the module docstring of core/draws.py on Python ints:
    element j of tensor i moves iff word(step_keys(seed, step, 1 + source_i), j) >= floor(p * 2**32)."""
    threshold = int(p * 2**32)
    out = []
    for t, s, m, src in zip(teacher, student, momenta, sources):
        keys = draws.step_keys(seed, step, 1 + src)
        moves = torch.tensor([draws.word(keys, j) >= threshold for j in range(t.numel())]).reshape(t.shape)
        out.append(torch.where(moves, torch.lerp(t, s, 1 - m), t))
    return out


def test_neuron_matches_rederivation():
    torch.manual_seed(1)
    teacher = [torch.randn(6, 5), torch.randn(6), torch.randn(40, 50)]
    student = [torch.randn_like(x) for x in teacher]
    for momentum in (0.8, [0.8, 0.0, 0.5]):  # one m, or one per tensor
        momenta = momentum if isinstance(momentum, list) else [momentum] * 3
        expect = rederive_neuron(teacher, student, momenta, 0.3, seed=7, step=2, sources=[0, 1, 2])
        got = [x.clone() for x in teacher]
        smooth_(got, student, momentum, 0.3, "neuron", 7, 2)
        for a, b in zip(got, expect):
            assert torch.equal(a, b)
    # a follower (BN statistics) reads its source's words: tensor 1 follows tensor 0
    units = [Unit(0, 0), Unit(0, 0)]
    t2, s2 = [torch.zeros(30), torch.zeros(30)], [torch.ones(30), torch.full((30,), 2.0)]
    expect = rederive_neuron(t2, s2, [0.0, 0.0], 0.5, seed=1, step=0, sources=[0, 0])
    smooth_(t2, s2, 0.0, 0.5, "neuron", 1, 0, units)
    assert all(torch.equal(a, b) for a, b in zip(t2, expect))


def test_neuron_draws_do_not_depend_on_chunking():
    torch.manual_seed(2)
    teacher = [torch.randn(37, 11), torch.randn(5), torch.randn(300)]
    student = [torch.randn_like(x) for x in teacher]
    units = [Unit(0, 0), Unit(0, 1), Unit(1, 2)]
    results = []
    for chunk in (7, 64, CHUNK):
        got = [x.clone() for x in teacher]
        plan = DrawPlan([x.shape for x in got], units, chunk=chunk)
        smooth_(got, student, 0.5, 0.6, "neuron", 4, 0, plan=plan)
        results.append(got)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_neuron_chunks_shared_by_threads_match_reference():
    # torch.get_num_threads() == 2: two threads share the chunks, each with serial torch ops
    # under the caller's no_grad (the teacher's tensors are parameters); the numbers are the
    # reference's, and the caller's and later threads' intra-op counts are left as they were.
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(3)
        shapes = [(1000, 7), (300,), (300,), (50,)]
        student = [torch.randn(s) for s in shapes]
        teacher = [nn.Parameter(torch.randn(s)) for s in shapes]
        units = [Unit(0, 0), Unit(1, 1), Unit(1, 1), Unit(2, 3)]  # tensor 2 follows tensor 1
        expect = [x.detach().clone() for x in teacher]
        smooth_reference_(expect, student, 0.9, 0.6, "neuron", 3, 5, units)
        with torch.no_grad():
            smooth_(teacher, student, 0.9, 0.6, "neuron", 3, 5, units, plan=DrawPlan(shapes, units, chunk=64))
        assert all(torch.equal(a, b) for a, b in zip(teacher, expect))
        assert torch.get_num_threads() == 2
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(old)


def test_high_preserve_prob_is_honoured():
    # p = 0.999 (paper 000 Fig. 3): 1e6 neuron draws, update share 1e-3 within 4 sigma.
    t, s = [torch.zeros(1_000_000)], [torch.ones(1_000_000)]
    smooth_(t, s, 0.0, 0.999, "neuron", 0, 0)
    n, q = 1_000_000, 0.001
    assert abs(t[0].sum().item() - n * q) < 4 * (n * q * (1 - q)) ** 0.5


def test_kernel_choice():
    t, s = [torch.zeros(4)], [torch.ones(4)]
    with pytest.raises(ValueError, match="kernel='cuda' is not one of auto, torch, triton"):
        smooth_(t, s, 0.0, 0.5, "neuron", kernel="cuda")
    # auto on CPU tensors is the torch path (no Triton, even when installed)
    assert not fast._use_triton("auto", t, s)


def test_copy_all_copies_every_pair_grouped_or_not():
    from stsmooth.core.fast import copy_all

    dst = [torch.zeros(3), torch.zeros((), dtype=torch.long), torch.zeros(2, dtype=torch.float64), torch.zeros(4)]
    src = [torch.arange(3.0), torch.tensor(7), torch.tensor([1.5, 2.5]), torch.arange(4, dtype=torch.float16)]
    copy_all(dst, src)
    for d, s in zip(dst, src):
        assert torch.equal(d, s.to(d.dtype)), (d, s)
    assert dst[1].dtype == torch.long and dst[3].dtype == torch.float32  # destinations keep their dtype
