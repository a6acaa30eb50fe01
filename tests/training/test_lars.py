"""LARS (training/lars.py): the trust ratio, and plain SGD on excluded parameters."""

import pytest
import torch

from stsmooth.training.lars import LARS


def test_lars_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([0.6, 0.8])
    opt = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0, eta=0.01)
    opt.step()
    # trust = eta * |w| / |g| = 0.01 * 5 / 1; update = lr * trust * g
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.05 * 0.6, 4.0 - 0.05 * 0.8]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([2.0])
    LARS([{"params": [b], "lars": False, "weight_decay": 0.0}], lr=0.1).step()
    assert b.item() == pytest.approx(0.8)  # plain SGD on excluded parameters
