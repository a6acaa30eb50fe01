"""The fused Triton kernel (core/triton_kernel.py) under Triton's interpreter on CPU: the torch path's numbers, bit for bit.

Triton reads ``TRITON_INTERPRET`` when a kernel is defined, so the check runs in a fresh
interpreter with it set.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import torch
    from torch import nn
    from stsmooth.core import triton_kernel
    from stsmooth.core.smoothing import module_tensors, smooth_

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 5)
            self.wide = nn.Linear(40, 64)  # 2,560 entries: full (unmasked) blocks and a masked tail
            self.scale = nn.Parameter(torch.tensor(1.5))

    assert triton_kernel.AVAILABLE
    assert type(triton_kernel._smooth_kernel).__name__ == "InterpretedFunction"
    torch.manual_seed(0)
    t_net, s_net = Net(), Net()
    for net in (t_net, s_net):
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.data.uniform_(0.5, 1.5)
    names, t0, units, _ = module_tensors(t_net)
    _, s, _, _ = module_tensors(s_net)
    copy = [0.0 if n.startswith("bn.running") else 0.9 for n in names]
    cases = 0
    for gran in ("channel", "neuron"):
        for momentum in (0.9, 0.3, 0.0, copy):       # lerp weight < 0.5, >= 0.5, = 1, per tensor
            for p in (0.3, 0.7, 0.999):
                for step in (0, 5):
                    want = [x.clone() for x in t0]
                    smooth_(want, s, momentum, p, gran, 11, step, units, kernel="torch")
                    got = [x.clone() for x in t0]
                    smooth_(got, s, momentum, p, gran, 11, step, units, kernel="triton")
                    for n, a, b in zip(names, got, want):
                        assert torch.equal(a, b), (gran, momentum, p, step, n, (a != b).sum().item())
                    moved = sum(int((a != x).sum()) for a, x in zip(got, t0))
                    kept = sum(int((a == x).sum()) for a, x in zip(got, t0))
                    assert kept > 0 and (moved > 0 or p == 0.999)
                    cases += 1
    # the kernel's hash alone: a 0-momentum SE step from zeros to ones shows each unit's draw
    t = [torch.zeros(3000)]
    smooth_(t, [torch.ones(3000)], 0.0, 0.5, "neuron", 4, 2, kernel="triton")
    from stsmooth.core import draws
    assert torch.equal(t[0].bool(), draws.moves(4, 2, 1, torch.arange(3000), 0.5))
    # one plan, two lists of tensors: the kernel's address table follows the tensors, not the plan
    from stsmooth.core.fast import DrawPlan, move_neurons
    plan = DrawPlan([x.shape for x in t0], units)
    for trial in range(2):
        fresh = [x.clone() + trial for x in t0]
        want = [x.clone() for x in fresh]
        move_neurons(want, s, plan, [0.1] * len(s), 0.5, 3, 7)
        triton_kernel.smooth_triton_(fresh, s, plan, [0.1] * len(s), 0.5, "neuron", 3, 7)
        assert all(torch.equal(a, b) for a, b in zip(fresh, want)), trial
    # addresses that are not 16-byte aligned (views one float into a buffer): the kernel must not
    # declare alignment for them (tables.aligned False) and still give the torch path's numbers
    flat_t, flat_s = torch.zeros(1 + 5000), torch.zeros(1 + 5000)
    flat_s[1:] = torch.arange(5000.0)
    odd_t, odd_s = [flat_t[1:3001].view(60, 50)], [flat_s[1:3001].view(60, 50)]
    want = [odd_t[0].clone()]
    smooth_(want, odd_s, 0.9, 0.5, "neuron", 5, 1, kernel="torch")
    smooth_(odd_t, odd_s, 0.9, 0.5, "neuron", 5, 1, kernel="triton")
    assert torch.equal(odd_t[0], want[0]) and flat_t[0] == 0 and not torch.equal(want[0], torch.zeros(60, 50))
    from stsmooth.core.smoothing import Unit
    one = DrawPlan([(60, 50)], [Unit(0, 0)])
    assert triton_kernel._Tables(odd_t, odd_s, one, "neuron").aligned is False
    assert triton_kernel._Tables(want, odd_s[:1], one, "neuron").aligned is False  # one odd address is enough
    assert triton_kernel._Tables(want, [torch.zeros(60, 50)], one, "neuron").aligned is True
    # channels-last pairs (how AMP training on CUDA stores conv weights): the kernel reads memory in
    # its order and must draw by row-major index, as the torch path does
    cl_t = [torch.randn(6, 5, 3, 7).contiguous(memory_format=torch.channels_last), torch.randn(40, 30),
            torch.randn(16, 8, 1, 1).contiguous(memory_format=torch.channels_last)]
    cl_s = [x + torch.randn_like(x) for x in cl_t]  # randn_like keeps the layout
    assert cl_t[0].stride() == cl_s[0].stride() == (105, 1, 35, 5) and not cl_t[0].is_contiguous()
    for gran in ("channel", "neuron"):
        for p in (0.3, 0.7):
            want = [x.clone() for x in cl_t]
            smooth_(want, cl_s, 0.9, p, gran, 2, 9, kernel="torch")
            got = [x.clone() for x in cl_t]
            smooth_(got, cl_s, 0.9, p, gran, 2, 9, kernel="triton")
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (gran, p)
            assert got[0].stride() == cl_t[0].stride()
            assert not torch.equal(got[0], cl_t[0]) and int((got[0] == cl_t[0]).sum()) > 0
    mixed = [cl_t[0].contiguous()]  # teacher contiguous, student channels-last: not the kernel's
    assert not triton_kernel._same_layout(mixed[0], cl_s[0]) and triton_kernel._same_layout(cl_t[0], cl_s[0])
    try:
        smooth_(mixed, cl_s[:1], 0.9, 0.5, "neuron", 2, 9, kernel="triton")
        raise AssertionError("mixed layouts must be refused")
    except ValueError as err:
        assert "both contiguous or both channels-last" in str(err)
    print("OK", cases)
""")


def test_triton_kernel_equals_torch_path_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["OK", "48"]


def test_triton_refuses_other_dtypes():
    import torch

    from stsmooth.core import triton_kernel
    from stsmooth.core.fast import DrawPlan
    from stsmooth.core.smoothing import Unit

    t, s = [torch.zeros(4, dtype=torch.float64)], [torch.ones(4, dtype=torch.float64)]
    with pytest.raises(ValueError, match="float32 tensors, both contiguous or both channels-last"):
        triton_kernel.smooth_triton_(t, s, DrawPlan([t[0].shape], [Unit(0, 0)]), [0.5], 0.5, "neuron", 0, 0)
