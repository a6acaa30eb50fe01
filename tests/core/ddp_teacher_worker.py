"""Run by tests/core/test_distributed.py under torchrun (2 gloo ranks); each rank trains on its own data.

Usage: ``torchrun --nproc_per_node 2 ddp_teacher_worker.py OUT [SCENARIO ...]``; every
scenario (default: all) writes its tensors to ``OUT/SCENARIO.rankR.pt``.
"""

import sys
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from stsmooth.core.distributed import end_worker, rank
from stsmooth.core.norm import shuffle_bn_forward
from stsmooth.core.teacher import Teacher

GRANULARITIES = ("tensor", "layer", "channel", "neuron")
NORMS = ("eman", "batch", "copy", "own")


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))


def train(ddp, teacher, steps, g, opt):
    for _ in range(steps):
        x = torch.randn(8, 3, 6, 6, generator=g) * (1 + rank())  # each rank its own data
        target = teacher(x) if teacher is not None else torch.zeros(8, 5)
        loss = (ddp(x) - target).pow(2).mean()  # the teacher's own BN (batch/own) sees local data
        opt.zero_grad()
        loss.backward()
        opt.step()
        if teacher is not None:
            teacher.update(ddp)


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def identical():
    """Teacher built with the DDP student, before any step."""
    results = {}
    for gran, norm in [(g, "eman") for g in GRANULARITIES] + [("layer", "batch"), ("neuron", "own")]:
        key = gran if norm == "eman" else f"{gran}/{norm}"
        student = tiny()
        ddp = nn.parallel.DistributedDataParallel(student)
        teacher = Teacher(ddp, momentum=0.9, preserve_prob=0.5, granularity=gran, norm=norm)  # seed agreed by rank 0
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        train(ddp, teacher, 20, torch.Generator().manual_seed(100 + rank()), opt)
        results[key] = state(teacher.module)
        results[key + "/student_bn"] = student[1].running_mean.clone()
    return results


def after_warmup():
    """Teacher built after 5 DDP steps, when the students' BN statistics are rank-local (issue 8 item 3)."""
    results = {}
    for gran in GRANULARITIES:
        for norm in NORMS:
            student = tiny()
            ddp = nn.parallel.DistributedDataParallel(student)
            opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
            g = torch.Generator().manual_seed(100 + rank())
            train(ddp, None, 5, g, opt)
            key = f"{gran}/{norm}"
            results[key + "/student_at_build"] = state(student)
            teacher = Teacher(ddp, momentum=0.9, preserve_prob=0.5, granularity=gran, norm=norm)
            results[key + "/teacher_at_build"] = state(teacher.module)
            train(ddp, teacher, 20, g, opt)
            results[key] = state(teacher.module)
    return results


def before_ddp():
    """Teacher built from a student whose weights differ across ranks, before DDP wraps it (item 3)."""
    results = {}
    for gran in GRANULARITIES:
        for norm in NORMS:
            student = tiny(seed=rank())
            key = f"{gran}/{norm}"
            results[key + "/student_at_build"] = state(student)
            teacher = Teacher(student, momentum=0.9, preserve_prob=0.5, granularity=gran, norm=norm)
            ddp = nn.parallel.DistributedDataParallel(student)  # DDP makes the students rank 0's
            opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
            train(ddp, teacher, 20, torch.Generator().manual_seed(100 + rank()), opt)
            results[key] = state(teacher.module)
    return results


def nonfinite():
    """A NaN in rank 1's student only, at the second update: every rank must raise/skip together (item 4)."""
    results = {}
    for mode in ("raise", "skip"):
        student = tiny()
        ddp = nn.parallel.DistributedDataParallel(student)
        teacher = Teacher(ddp, momentum=0.9, preserve_prob=0.5, granularity="layer", norm="eman", nonfinite=mode)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(100 + rank())
        events = []
        for step in range(4):
            x = torch.randn(8, 3, 6, 6, generator=g) * (1 + rank())
            loss = (ddp(x) - teacher(x)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == 1 and rank() == 1:
                # rank-local BN statistic; DDP re-broadcasts rank 0's at the next forward
                student[1].running_var[0] = float("nan")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    teacher.update(ddp)
                    events.append(1 if any("non-finite" in str(w.message) for w in caught) else 0)
                except ValueError:
                    events.append(2)
        results[mode] = state(teacher.module)
        results[mode + "/events"] = torch.tensor(events)
        results[mode + "/step"] = torch.tensor(teacher.step)
    return results


def shuffle():
    """ShuffleBN across ranks (item 2): keys of rank r depend on the other rank's images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # train-mode BN: outputs depend on companions
    g = torch.Generator().manual_seed(200 + rank())
    x = torch.randn(4, 3, generator=g) * (1 + rank())
    results = {"model": state(model), "x": x}
    results["out"] = shuffle_bn_forward(model, x, generator=torch.Generator().manual_seed(5))
    # rank 1 changes its images, rank 0 keeps its own; the same permutation
    x2 = x + 3.0 * rank()
    results["x2"] = x2
    results["out2"] = shuffle_bn_forward(model, x2, generator=torch.Generator().manual_seed(5))
    # four sub-batches of two images, two on each rank
    results["out4"] = shuffle_bn_forward(model, x, groups=4, generator=torch.Generator().manual_seed(6))
    # eval-mode BN: a per-sample function, so only the order can differ from a plain forward
    model.load_state_dict(results["model"])  # the train-mode forwards moved rank-local running statistics
    model.eval()
    results["eval_out"] = shuffle_bn_forward(model, x)
    results["eval_plain"] = model(x).detach()
    # unequal batch sizes: every rank stops with the same one-line error
    try:
        shuffle_bn_forward(model, x[: 4 - rank()], generator=torch.Generator())
        results["unequal_error"] = ""
    except ValueError as e:
        results["unequal_error"] = str(e)
    # every rank's default generator, and so the rest of the run, advances alike
    results["rng_after"] = torch.rand(3)
    return results


SCENARIOS = {f.__name__: f for f in (identical, after_warmup, before_ddp, nonfinite, shuffle)}

if __name__ == "__main__":
    out = sys.argv[1]
    names = sys.argv[2:] or list(SCENARIOS)
    # A short timeout: a collective that one rank never joins fails the job instead of hanging it.
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    for name in names:
        torch.manual_seed(0)
        torch.save(SCENARIOS[name](), f"{out}/{name}.rank{rank()}.pt")
    dist.destroy_process_group()
    end_worker(0)  # results on disk; gloo's teardown aborted now and then
