"""Host time of one teacher update, with the arithmetic made negligible.

On a GPU a ResNet-50 EMA takes about 0.2-0.4 ms of device time (README, "GPU"), so the Python
work around it (looking up the student's tensors, grouping by rate, copying buffers) decides
whether our TMA keeps up with a bare ``torch._foreach_lerp_``. This measures that work on the
CPU: a network with ResNet-50's tensor count (53 convolution + BatchNorm pairs and a linear
layer: 267 floating tensors and 53 ``num_batches_tracked`` counters) whose tensors hold one
entry each.

    python benchmarks/update_overhead.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from stsmooth import Teacher


class ManyTensors(nn.Module):
    """ResNet-50's count of tensors, one entry each."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1)) for _ in range(53))
        self.fc = nn.Linear(1, 1)


def per_call_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats * 1e3)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    student = ManyTensors()
    floating = list(student.parameters()) + [b for b in student.buffers() if b.is_floating_point()]
    copies = [t.clone() for t in floating]

    def bare() -> None:
        with torch.no_grad():  # as the teacher runs it: no autograd bookkeeping for the student's tensors
            torch._foreach_lerp_(copies, floating, 0.01)

    rows = {"torch._foreach_lerp_ (bare)": bare}
    for label, p_, gran in (("ours TMA", 0.0, "layer"), ("ours STS layer", 0.7, "layer"),
                            ("ours STS tensor", 0.7, "tensor")):
        teacher = Teacher(student, momentum=0.99, preserve_prob=p_, granularity=gran, seed=0, nonfinite="ignore")
        rows[label] = lambda t=teacher: t.update(student)
    print(f"{len(floating)} floating tensors of one entry; host ms per call (best of 5 x {args.repeats})")
    base = None
    for name, fn in rows.items():
        ms = per_call_ms(fn, args.repeats)
        base = base or ms
        print(f"  {name:30s} {ms:7.3f} ms   {ms / base:5.2f} x bare foreach")


if __name__ == "__main__":
    main()
