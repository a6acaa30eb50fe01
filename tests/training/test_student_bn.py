"""Under torchrun the student that is evaluated, saved and exported is one network (issue 14 item 5)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stsmooth.training import checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_evaluate_save_and_export_the_rank_averaged_student_statistics(tmp_path):
    worker = Path(__file__).with_name("student_bn_worker.py")
    port, procs = free_port(), []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(worker), str(rank), str(tmp_path)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    finally:
        for p in procs:
            p.kill()
    ranks = [torch.load(tmp_path / f"bn_rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = checkpoint.load(tmp_path / "run/checkpoints/last.pt")["model"]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 0
    for name in ranks[0]:
        # each rank evaluated its share of the test set with these statistics: they must be one set,
        # the one the checkpoint (and student.safetensors, exported from it) holds
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.equal(saved[f"student.{name}"], ranks[0][name]), name
