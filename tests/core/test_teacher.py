"""Teacher: modules, EMAN statistics, BN modes, resume, errors."""

import copy

import pytest
import torch
from torch import nn

from stsmooth.core.teacher import Teacher

GRANS = ("tensor", "layer", "channel", "neuron")


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def sgd_step(student, k):
    """A deterministic 'training step': the student's weights and BN statistics change."""
    g = torch.Generator().manual_seed(1000 + k)
    student.train()
    student(torch.randn(6, 3, 6, 6, generator=g))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def test_forward_no_grad_and_module_is_copy():
    s = tiny()
    t = Teacher(s, momentum=0.9)
    y = t(torch.randn(2, 3, 6, 6))
    assert not y.requires_grad
    assert t.module is not s and all(not p.requires_grad for p in t.module.parameters())
    assert all(p.requires_grad for p in s.parameters())


def test_tma_module_hand_computed():
    s = nn.Linear(2, 1)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([[1.0, 2.0]]))
        s.bias.fill_(0.0)
    t = Teacher(s, momentum=0.5, preserve_prob=0.0)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([[3.0, 6.0]]))
        s.bias.fill_(4.0)
    t.update(s)
    assert torch.equal(t.module.weight, torch.tensor([[2.0, 4.0]]))
    assert torch.equal(t.module.bias, torch.tensor([2.0]))
    t.update(s, momentum=0.0, preserve_prob=0.0)  # m=0, p=0: copy
    assert torch.equal(t.module.weight, s.weight)


@pytest.mark.parametrize("gran", GRANS)
def test_eman_statistics_are_ema_of_students(gran):
    s = tiny()
    t = Teacher(s, momentum=0.8, preserve_prob=0.0, granularity=gran, norm="eman", seed=0)
    expect_mean = t.module[1].running_mean.clone()
    expect_var = t.module[1].running_var.clone()
    for k in range(5):
        sgd_step(s, k)
        t.update(s)
        expect_mean = 0.8 * expect_mean + 0.2 * s[1].running_mean
        expect_var = 0.8 * expect_var + 0.2 * s[1].running_var
    torch.testing.assert_close(t.module[1].running_mean, expect_mean)
    torch.testing.assert_close(t.module[1].running_var, expect_var)
    assert t.module[1].num_batches_tracked == s[1].num_batches_tracked  # copied, not averaged


def test_eman_statistics_move_with_gamma_under_sts():
    s = tiny()
    t = Teacher(s, momentum=0.0, preserve_prob=0.5, granularity="neuron", norm="eman", seed=3)
    sgd_step(s, 0)
    t.update(s)
    bn_t, bn_s = t.module[1], s[1]
    moved = bn_t.weight == bn_s.weight
    assert torch.equal(bn_t.running_mean == bn_s.running_mean, moved)
    assert torch.equal(bn_t.running_var == bn_s.running_var, moved)


def wn_net(seed=0):
    """A weight-normed conv with a bias, then a BatchNorm without gamma/beta."""
    torch.manual_seed(seed)
    conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 16, 3))
    return nn.Sequential(conv, nn.BatchNorm2d(16, affine=False), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 5))


@pytest.mark.parametrize("gran", GRANS)
def test_weight_norm_and_affine_free_batchnorm_units(gran):
    # SE (m=0): a drawn unit copies the student, so "moved" = "equals the student".
    s = wn_net()
    t = Teacher(s, momentum=0.0, preserve_prob=0.5, granularity=gran, norm="eman", seed=5)
    stat_outcomes, conv_outcomes = set(), set()
    # 12 steps: at p = 0.5 a unit stays put throughout with chance 2**-12 (6 steps, 1/64,
    # was too few: seed 5's counter draws keep unit 0 for its first 6 steps)
    for k in range(12):
        sgd_step(s, k)  # every parameter and statistic of the student changes
        t.update(s)
        ts, ss = t.module.state_dict(), s.state_dict()
        moved = {n: ts[n] == ss[n] for n in ts if ts[n].is_floating_point()}
        # the statistics of a BatchNorm without gamma are one unit per channel (or per layer)
        assert torch.equal(moved["1.running_mean"], moved["1.running_var"])
        stat_outcomes.update(moved["1.running_mean"].tolist())
        g, v, b = (moved[f"0.{n}"] for n in ("parametrizations.weight.original0",
                                             "parametrizations.weight.original1", "bias"))
        if gran in ("layer", "channel"):  # weight norm's g, v and the bias: one layer, row c one channel
            assert torch.equal(g.flatten(), b) and torch.equal(v, g.expand_as(v))
        conv_outcomes.update(b.tolist())
    assert stat_outcomes == conv_outcomes == {True, False}


def test_eman_output_independent_of_batch_companions():
    s = tiny()
    sgd_step(s, 0)
    x = torch.randn(8, 3, 6, 6)
    eman = Teacher(s, norm="eman")
    torch.testing.assert_close(eman(x)[:1], eman(x[:1]))
    batch = Teacher(s, norm="batch")
    assert not torch.allclose(batch(x)[:2], batch(x[:2]))


def test_copy_and_own_modes():
    s = tiny()
    copy_t = Teacher(s, momentum=0.9, norm="copy")
    own_t = Teacher(s, momentum=0.9, norm="own")
    before = own_t.module[1].running_mean.clone()
    sgd_step(s, 0)
    copy_t.update(s)
    own_t.update(s)
    assert torch.equal(copy_t.module[1].running_mean, s[1].running_mean)
    assert torch.equal(own_t.module[1].running_mean, before)  # not taken from the student
    x = torch.randn(4, 3, 6, 6) + 2.0
    y1 = own_t(x)
    assert not torch.equal(own_t.module[1].running_mean, before)  # updated by its own batch, after use
    assert not own_t.module[1].training  # normalises with running statistics
    own_t.eval()
    snapshot = own_t.module[1].running_mean.clone()
    own_t(x)
    assert torch.equal(own_t.module[1].running_mean, snapshot)  # evaluation does not collect
    assert y1.shape == (4, 5)


@pytest.mark.parametrize("gran", GRANS)
def test_copy_statistics_follow_their_layers_draws(gran):
    # "copy" is EMAN's Eq. 9 with m=0 for the statistics (003 §5, Table 8 "student PN"), under
    # the same draws as their layer: a drawn unit's statistics become the student's, a preserved
    # one's stay; the parameters move exactly as those of an eman teacher with the same seed.
    s = tiny()
    copy_t = Teacher(s, momentum=0.5, preserve_prob=0.5, granularity=gran, norm="copy", seed=2)
    eman_t = Teacher(s, momentum=0.5, preserve_prob=0.5, granularity=gran, norm="eman", seed=2)
    outcomes = set()
    for k in range(6):
        sgd_step(s, k)
        bn = copy_t.module[1]
        gamma, mean, var = bn.weight.clone(), bn.running_mean.clone(), bn.running_var.clone()
        copy_t.update(s)
        eman_t.update(s)
        for (n, a), b in zip(copy_t.module.named_parameters(), eman_t.module.parameters()):
            assert torch.equal(a, b), n
        moved = bn.weight != gamma  # m=0.5 and a student gamma that differs: moved iff changed
        assert torch.equal(bn.running_mean, torch.where(moved, s[1].running_mean, mean))
        assert torch.equal(bn.running_var, torch.where(moved, s[1].running_var, var))
        outcomes.update(moved.tolist())
    assert outcomes == {True, False}


@pytest.mark.parametrize("norm", ["eman", "batch", "copy", "own"])
def test_preserve_prob_one_leaves_teacher_unchanged(norm):
    s = tiny()
    t = Teacher(s, momentum=0.5, preserve_prob=1.0, norm=norm)
    before = copy.deepcopy(t.module.state_dict())
    sgd_step(s, 0)
    t.update(s)
    after = t.module.state_dict()
    for n in before:
        assert torch.equal(before[n], after[n]), n
    assert t.step == 1


@pytest.mark.parametrize("gran", GRANS)
def test_resume_bit_identical(gran):
    s1, s2 = tiny(), tiny()
    straight = Teacher(s1, momentum=0.9, preserve_prob=0.7, granularity=gran, seed=11)
    for k in range(20):
        sgd_step(s1, k)
        straight.update(s1)
    first = Teacher(s2, momentum=0.9, preserve_prob=0.7, granularity=gran, seed=11)
    for k in range(10):
        sgd_step(s2, k)
        first.update(s2)
    state = copy.deepcopy(first.state_dict())
    resumed = Teacher(s2, momentum=0.9, preserve_prob=0.7, granularity=gran, seed=999)
    resumed.load_state_dict(state)
    for k in range(10, 20):
        sgd_step(s2, k)
        resumed.update(s2)
    assert resumed.step == 20
    for (n, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), n


def test_accepts_compiled_and_wrapped_student():
    s = tiny()
    compiled = torch.compile(s)
    t = Teacher(compiled, momentum=0.5)
    assert isinstance(t.module, nn.Sequential)
    for k, wrapped in enumerate((compiled, nn.DataParallel(s))):
        before = copy.deepcopy(t.module.state_dict())
        sgd_step(s, k)
        t.update(wrapped)
        # the wrapped student's tensors were found: TMA from them (weights and EMAN statistics)
        for n, v in t.module.state_dict().items():
            student = s.state_dict()[n]
            expect = 0.5 * before[n] + 0.5 * student if v.is_floating_point() else student
            torch.testing.assert_close(v, expect, rtol=0, atol=1e-7, msg=n)
    assert t.step == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(momentum=-0.1), "momentum=-0.1"),
        (dict(preserve_prob=2), "preserve_prob=2"),
        (dict(granularity="block"), "granularity='block'.*tensor, layer, channel, neuron"),
        (dict(norm="group"), "norm='group'.*eman, batch, copy, own"),
        (dict(nonfinite="crash"), "nonfinite='crash'"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Teacher(tiny(), **kwargs)


def test_update_errors():
    t = Teacher(tiny(), momentum=0.9)
    with pytest.raises(ValueError, match="preserve_prob=1.5"):
        t.update(tiny(), preserve_prob=1.5)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 6))
    with pytest.raises(ValueError, match=r"'4.weight' has shape \(6, 64\)"):
        t.update(other)
    renamed = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="no tensor '1.weight'"):
        t.update(renamed)


def test_nonfinite_raises_or_skips_and_leaves_teacher():
    s = tiny()
    t = Teacher(s, momentum=0.5, preserve_prob=0.3, granularity="neuron", seed=0)
    before = copy.deepcopy(t.module.state_dict())
    with torch.no_grad():
        s[4].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'4.weight' has non-finite values"):
        t.update(s)
    assert all(torch.equal(a, b) for a, b in zip(before.values(), t.module.state_dict().values()))
    skip = Teacher(tiny(), nonfinite="skip")
    with pytest.warns(RuntimeWarning, match="update skipped"):
        skip.update(s)
    assert skip.step == 0


def test_load_state_dict_mismatch():
    t = Teacher(tiny(), granularity="layer")
    state = t.state_dict()
    with pytest.raises(ValueError, match="granularity='layer'"):
        Teacher(tiny(), granularity="neuron").load_state_dict(state)


def test_update_resolves_a_student_once_not_every_step(monkeypatch):
    """The student's tensors are looked up (and unwrap's FSDP1 check walks every module) once per
    student object: on a GPU that walk cost more than the EMA itself per update."""
    from stsmooth.core import distributed

    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = Teacher(student, momentum=0.5, seed=0)
    walks = []
    original = distributed.is_fsdp1
    monkeypatch.setattr(distributed, "is_fsdp1", lambda m: walks.append(m) or original(m))
    for _ in range(3):
        teacher.update(student)
    assert len(walks) == 1
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = teacher.module[0].weight.clone()
    teacher.update(other)  # a new student object is resolved (and checked) again, and its values used
    assert len(walks) == 2
    assert torch.equal(teacher.module[0].weight, torch.lerp(before, other[0].weight, 0.5))
