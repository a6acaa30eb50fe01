"""Two CPU processes (gloo) with DDP: teachers stay bit-identical across ranks."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from stsmooth.core import distributed


def test_helpers_without_process_group():
    x = torch.arange(6).reshape(3, 2)
    assert distributed.all_gather_concat(x) is x
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.broadcast_int(7) == 7
    distributed.average_([x.float()])  # no-op


def test_two_ranks_identical_teachers(tmp_path):
    worker = Path(__file__).with_name("ddp_teacher_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for gran in ("tensor", "layer", "channel", "neuron", "layer/batch", "neuron/own"):
        # the ranks' own students saw different data, so their local BN statistics differ ...
        assert not torch.equal(r0[gran + "/student_bn"], r1[gran + "/student_bn"])
        # ... yet the teachers, parameters and BN statistics, are identical bit for bit
        for name, a in r0[gran].items():
            assert torch.equal(a, r1[gran][name]), f"{gran}: {name}"
