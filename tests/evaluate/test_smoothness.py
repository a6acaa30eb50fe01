import pytest
import torch
from torch import nn

from stsmooth.evaluate.smoothness import output_msd, param_msd, snapshot


def linear(weight, bias):
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        m.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return m


def test_param_msd_by_hand():
    a = linear([[0, 0], [0, 0]], [0, 0])
    b = linear([[1, 1], [1, 1]], [2, 2])
    # four weight differences of 1 and two bias differences of 2: (4 + 8) / 6
    assert param_msd(a, b) == pytest.approx(2.0)
    assert param_msd(a, a) == 0.0
    assert param_msd(snapshot(a), b.state_dict()) == pytest.approx(2.0)


def test_snapshot_is_a_detached_copy():
    m = linear([[1, 2], [3, 4]], [5, 6])
    snap = snapshot(m)
    with torch.no_grad():
        m.weight.add_(1.0)
    assert torch.equal(snap["weight"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert not snap["weight"].requires_grad
    assert param_msd(snap, m) == pytest.approx(4 / 6)


def test_buffers_and_integer_entries():
    bn = nn.BatchNorm1d(3)
    assert set(snapshot(bn)) == {"weight", "bias"}
    assert set(snapshot(bn, buffers=True)) == {"weight", "bias", "running_mean", "running_var"}
    other = nn.BatchNorm1d(3)
    other.running_mean.fill_(1.0)
    other.num_batches_tracked.fill_(7)  # integer: ignored
    # 12 floating elements, three differ by 1
    assert param_msd(bn.state_dict(), other.state_dict()) == pytest.approx(3 / 12)


def test_mismatched_names():
    with pytest.raises(ValueError, match="differ in names"):
        param_msd(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))


def test_output_msd_by_hand():
    a = linear([[1, 0], [0, 1]], [0, 0]).train()
    b = linear([[2, 0], [0, 2]], [0, 0])
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # outputs x and 2x differ by x: mean(x^2) = (1 + 4 + 9 + 16) / 4
    assert output_msd(a, b, x) == pytest.approx(7.5)
    assert a.training and b.training  # modes restored after the eval-mode forward
    assert output_msd(x, 2 * x) == pytest.approx(7.5)
    with pytest.raises(ValueError, match="shapes"):
        output_msd(x, x[:1])
    with pytest.raises(ValueError, match="probe_batch"):
        output_msd(a, b)


def test_output_msd_runs_in_eval_mode():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9)).train()
    # In train mode dropout would make two passes of the same model differ.
    assert output_msd(a, a, torch.randint(0, 256, (8, 4), dtype=torch.uint8)) == 0.0
    assert a.training and a[1].training
