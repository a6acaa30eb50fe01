"""Milliseconds per teacher update on a ResNet-50 (25.6M parameters, 161 tensors).

Compares the official codes' loops, a plain ``torch._foreach_lerp_`` EMA, and
stsmooth's TMA and STS (p=0.7) at each granularity with ``norm="eman"``.
Prints the median over ``--repeats`` updates (the rows take turns, so load from other
processes hits them alike) and the ratios to the foreach EMA and to our TMA. On a shared,
busy machine ``--clock process`` times CPU seconds of this process instead of wall seconds
(threads waiting at a barrier for a descheduled peer then cost nothing), and ``--stat min``
takes the fastest update. ``--kernel torch`` turns the fused Triton kernel off on CUDA.
The neuron/channel draws are the counter draws of :mod:`stsmooth.core.draws` (0.2).

    python benchmarks/teacher_update.py [--repeats 15] [--device cpu|cuda] [--threads N]
                                        [--clock wall|process] [--stat median|min] [--kernel auto|torch]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from stsmooth import Teacher
from stsmooth.models import build


def official_sts(teacher, student, m=0.99, p=0.7):
    """Paper 000 Algorithm 2 as the official code writes it: one np.random.rand() per tensor."""
    for s, t in zip(student.parameters(), teacher.parameters()):
        if np.random.rand() < p:
            continue
        t.data = m * t.data + (1 - m) * s.data


def official_eman(teacher, student, m=0.99):
    """The EMAN state_dict loop: every entry averaged, num_batches_tracked copied."""
    ts, ss = teacher.state_dict(), student.state_dict()
    for (k, v_t), v_s in zip(ts.items(), ss.values()):
        if "num_batches_tracked" in k:
            v_t.copy_(v_s)
        else:
            v_t.copy_(v_t * m + (1.0 - m) * v_s)


def foreach_ema(t_list, s_list, m=0.99):
    """What timm ModelEmaV3 / torch AveragedModel do: one multi-tensor lerp."""
    torch._foreach_lerp_(t_list, s_list, 1.0 - m)


def timed(rows, repeats, device, clock=time.perf_counter, stat=statistics.median):
    """ms of each row (``stat`` over ``repeats``); the rows take turns so that load from other processes hits all alike."""
    for _, fn in rows:
        fn()
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(repeats):
        for name, fn in rows:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(clock() - t0)
    return [(name, stat(ts) * 1e3) for name, ts in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("wall", "process"), default="wall")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    ap.add_argument("--kernel", choices=("auto", "torch"), default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    student = build("resnet50", num_classes=1000).to(device)
    n_params = sum(p.numel() for p in student.parameters())
    n_tensors = len(list(student.parameters()))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ref_teacher = copy.deepcopy(student)
    float_t = [v for v in ref_teacher.state_dict().values() if v.is_floating_point()]
    float_s = [v for v in student.state_dict().values() if v.is_floating_point()]

    rows = [
        ("official STS loop (Alg. 2, p=0.7)", lambda: official_sts(ref_teacher, student)),
        ("official EMAN state_dict loop", lambda: official_eman(ref_teacher, student)),
        ("torch._foreach_lerp_ EMA", lambda: foreach_ema(float_t, float_s)),
    ]
    ours = {}
    for label, p, gran in [("TMA", 0.0, "layer")] + [(f"STS {g}", 0.7, g) for g in ("tensor", "layer", "channel", "neuron")]:
        for check in ("raise", "ignore"):
            t = Teacher(student, momentum=0.99, preserve_prob=p, granularity=gran, norm="eman", seed=0, nonfinite=check,
                        kernel=args.kernel)
            name = f"ours {label}" + (" (no finite check)" if check == "ignore" else "")
            ours[name] = t
            rows.append((name, lambda t=t: t.update(student)))

    print(f"ResNet-50: {n_params:,} parameters in {n_tensors} tensors; device {device}, "
          f"{torch.get_num_threads()} threads, {args.stat} of {args.repeats}, {args.clock} clock, kernel {args.kernel}")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    results = timed(rows, args.repeats, device, clock, statistics.median if args.stat == "median" else min)
    base = dict(results)["torch._foreach_lerp_ EMA"]
    tma = dict(results)["ours TMA"]
    print("| update | ms | × foreach EMA | × our TMA |\n|---|---:|---:|---:|")
    for name, ms in results:
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} | {ms / tma:.2f} |")


if __name__ == "__main__":
    main()
