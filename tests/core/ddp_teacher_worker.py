"""Run by tests/core/test_distributed.py under torchrun: each rank trains on its own data."""

import sys

import torch
import torch.distributed as dist
from torch import nn

from stsmooth.core.distributed import init_from_env, rank
from stsmooth.core.teacher import Teacher

out = sys.argv[1]
init_from_env()
torch.manual_seed(0)
results = {}
RUNS = [(g, "eman") for g in ("tensor", "layer", "channel", "neuron")] + [("layer", "batch"), ("neuron", "own")]
for gran, norm in RUNS:
    key = gran if norm == "eman" else f"{gran}/{norm}"
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    ddp = nn.parallel.DistributedDataParallel(student)
    teacher = Teacher(ddp, momentum=0.9, preserve_prob=0.5, granularity=gran, norm=norm)  # seed agreed by rank 0
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank())  # each rank its own data
    for _ in range(20):
        x = torch.randn(8, 3, 6, 6, generator=g) * (1 + rank())
        loss = (ddp(x) - teacher(x)).pow(2).mean()  # the teacher's own BN (batch/own) sees local data
        opt.zero_grad()
        loss.backward()
        opt.step()
        teacher.update(ddp)
    results[key] = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    results[key + "/student_bn"] = student[1].running_mean.clone()
torch.save(results, f"{out}/rank{rank()}.pt")
dist.destroy_process_group()
