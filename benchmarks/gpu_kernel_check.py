"""On a CUDA GPU: the fused Triton update (core/triton_kernel.py) against the torch path, bit for bit, and timed.

Issue 12 item 3. On a ResNet-50's floating tensors (25.6M parameters and the BatchNorm
statistics), for channel- and neuron-wise STS at several p and m:

* correctness: the kernel's teacher equals the torch path's on the same GPU, and the
  torch path on the CPU, entry for entry (the counts of differing entries are printed;
  every one must be 0); the teacher is poisoned with NaN in the entries the draw keeps
  nowhere, so a missed write would show as a difference;
* timing (``triton.testing.do_bench``, median, CUDA events): one kernel update, one torch-path
  update and one ``torch._foreach_lerp_`` EMA on the same tensors.

    python benchmarks/gpu_kernel_check.py     # needs CUDA and triton; exits 1 on any difference
"""

from __future__ import annotations

import sys

import torch

from stsmooth.core.fast import DrawPlan
from stsmooth.core.smoothing import module_tensors, smooth_
from stsmooth.models import build


def main() -> int:
    import triton.testing

    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = build("resnet50", num_classes=1000)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    _, t_cpu, units, _ = module_tensors(net)
    s_cpu = [x + 0.01 * torch.randn_like(x) for x in t_cpu]
    plan = DrawPlan([x.shape for x in t_cpu], units)
    t_gpu = [x.to(dev) for x in t_cpu]
    s_gpu = [x.to(dev) for x in s_cpu]
    n = sum(x.numel() for x in t_cpu)
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; "
          f"ResNet-50: {len(t_cpu)} floating tensors, {n:,} entries")
    bad = 0
    # AMP training on CUDA stores conv weights channels-last: the kernel must take them as they are
    t_cl = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in t_gpu]
    s_cl = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in s_gpu]
    for gran in ("channel", "neuron"):
        tor = [x.clone() for x in t_gpu]
        smooth_(tor, s_gpu, 0.99, 0.7, gran, 5, 77, units, plan=plan, kernel="torch")
        got = [x.clone() for x in t_cl]
        smooth_(got, s_cl, 0.99, 0.7, gran, 5, 77, units, plan=plan, kernel="triton")
        d_cl = sum(int((a != b).sum()) for a, b in zip(got, tor))
        bad += d_cl
        print(f"  {gran:7s} channels-last teacher and student, m=0.99 p=0.7: differing entries vs torch GPU {d_cl}")
    for gran in ("channel", "neuron"):
        for m in (0.99, 0.3):
            for p in (0.5, 0.7, 0.999):
                for step in (0, 123457):
                    ref = [x.clone() for x in t_cpu]
                    smooth_(ref, s_cpu, m, p, gran, 5, step, units, plan=plan, kernel="torch")
                    tor = [x.clone() for x in t_gpu]
                    smooth_(tor, s_gpu, m, p, gran, 5, step, units, plan=plan, kernel="torch")
                    got = [x.clone() for x in t_gpu]
                    smooth_(got, s_gpu, m, p, gran, 5, step, units, plan=plan, kernel="triton")
                    d_torch = sum(int((a != b).sum()) for a, b in zip(got, tor))
                    d_cpu = sum(int((a.cpu() != b).sum()) for a, b in zip(got, ref))
                    moved = sum(int((a.cpu() != b).sum()) for a, b in zip(got, t_cpu))
                    bad += d_torch + d_cpu
                    print(f"  {gran:7s} m={m:<5} p={p:<5} step={step:<7} differing entries: vs torch GPU {d_torch}, "
                          f"vs torch CPU {d_cpu}; moved {moved / n:.4f} (expected {(1 - p):.4f})")
    # timings
    print("\nmedian ms per update (do_bench, CUDA events):")
    rows = {"torch._foreach_lerp_ EMA": lambda: torch._foreach_lerp_(t_gpu, s_gpu, 0.01)}
    for gran in ("channel", "neuron"):
        rows[f"STS {gran}, Triton kernel"] = lambda g=gran: smooth_(t_gpu, s_gpu, 0.99, 0.7, g, 5, 3, units, plan=plan,
                                                                      kernel="triton")
        rows[f"STS {gran}, torch path"] = lambda g=gran: smooth_(t_gpu, s_gpu, 0.99, 0.7, g, 5, 3, units, plan=plan,
                                                                    kernel="torch")
    rows["STS neuron, Triton kernel, channels-last"] = lambda: smooth_(t_cl, s_cl, 0.99, 0.7, "neuron", 5, 3, units,
                                                                       plan=plan, kernel="triton")
    base = None
    for name, fn in rows.items():
        ms = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
        base = base or ms
        print(f"  {name:32s} {ms:8.3f} ms   {ms / base:6.2f} x foreach   "
              f"{(3 * 4 * n) / (ms * 1e-3) / 1e9:7.0f} GB/s (3 x 4 B per entry)")
    print(f"\nTOTAL differing entries: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
