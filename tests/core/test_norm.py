"""What the teacher's BatchNorm does (core/norm.py): the mode table as data, the ``own`` hook, ShuffleBN."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from stsmooth.core.norm import (
    BN_MODES,
    NORMS,
    NormalisesWith,
    StatisticsFrom,
    check_norm,
    collect_statistics,
    install_own_statistics,
    set_teacher_mode,
    shuffle_bn_forward,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_modes_are_the_readme_table():
    # | `eman` (default) | normalises with | statistics come from | paper |
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\| `(\w+)`[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|$", line)
        if m and m.group(1) in ("eman", "batch", "copy", "own"):
            rows[m.group(1)] = [c.strip() for c in m.groups()[1:]]
    assert list(rows) == list(NORMS) == ["eman", "batch", "copy", "own"]
    for name, (normalises, source, paper) in rows.items():
        mode = BN_MODES[name]
        assert normalises.startswith(mode.normalises_with.value), name
        assert source.startswith(mode.statistics_from.value), name
        assert paper.replace("\u2013", "-") == mode.paper, name


def test_what_each_mode_makes_the_teacher_do():
    # (moves its statistics under their layer's draws, with m=0 there, copies unsmoothed buffers
    # (num_batches_tracked) from the student, folds its own batches in after an eval-mode forward):
    # 003 Eq. 9 for eman; Eq. 9 with m=0 for copy (Table 8 "student PN"), "teacher PN" for own;
    # train-mode BN for batch
    expect = {"eman": (True, False, True, False), "batch": (False, False, False, False),
              "copy": (True, True, True, False), "own": (False, False, False, True)}
    got = {n: (m.smooths_statistics, m.copies_statistics, m.copies_from_student, m.folds_in_after_use)
           for n, m in BN_MODES.items()}
    assert got == expect
    assert [n for n, m in BN_MODES.items() if m.normalises_with is NormalisesWith.BATCH] == ["batch"]
    assert [n for n, m in BN_MODES.items() if m.statistics_from is StatisticsFrom.OWN_BATCHES] == ["batch", "own"]


def test_modes_are_frozen():
    with pytest.raises(AttributeError):
        BN_MODES["eman"].paper = "x"


def test_check_norm():
    assert check_norm("own") == "own"
    with pytest.raises(ValueError, match="norm='ema' is not one of eman, batch, copy, own"):
        check_norm("ema")


@pytest.mark.parametrize("norm,bn_training", [("eman", False), ("batch", True), ("copy", False), ("own", False)])
def test_set_teacher_mode_sets_bn_only(norm, bn_training):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    set_teacher_mode(net, norm)
    assert net[1].training is bn_training
    assert net[0].training and net[2].training  # dropout noise stays (Mean Teacher)


def test_own_hook_folds_the_batch_in_after_use():
    bn = nn.BatchNorm1d(2, momentum=0.1).eval()
    bn.running_mean.fill_(1.0)
    install_own_statistics(bn)
    x = torch.tensor([[0.0, 2.0], [2.0, 2.0], [4.0, 8.0]])
    collect_statistics(bn, True)
    out = bn(x)
    # normalised with the statistics it had (mean 1, var 1), not the batch's
    torch.testing.assert_close(out, (x - 1.0) / (1.0 + bn.eps) ** 0.5)
    # then folded in: batch mean (2, 4), unbiased var (4, 12); r <- 0.9 r + 0.1 batch
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.9 + 0.2, 0.9 + 0.4]))
    torch.testing.assert_close(bn.running_var, torch.tensor([0.9 + 0.4, 0.9 + 1.2]))
    assert int(bn.num_batches_tracked) == 1
    collect_statistics(bn, False)  # evaluation forwards leave the statistics alone
    before = bn.running_mean.clone()
    bn(x + 5.0)
    assert torch.equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 1


def test_shuffle_bn_normalises_each_sample_within_its_shuffled_sub_batch():
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    bn = nn.BatchNorm1d(1, affine=False, track_running_stats=False)
    out = shuffle_bn_forward(bn, x, groups=2, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(1))  # halves {1, 3}, {2, 0}: not the unshuffled ones
    expect = torch.empty_like(x)
    for half in perm.view(2, 2):  # each sub-batch of two: +-1 / sqrt(1 + eps / d^2)
        a, b = x[half, 0]
        d = (a - b).abs() / 2
        expect[half, 0] = torch.stack([a - b, b - a]) / 2 / (d**2 + bn.eps) ** 0.5
    torch.testing.assert_close(out, expect)
    with pytest.raises(ValueError, match=r"groups=3 must be a positive multiple of the world size 1 whose share "
                                         r"groups/1 divides the batch size 4"):
        shuffle_bn_forward(bn, x, groups=3)
