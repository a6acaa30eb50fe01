"""Two CPU processes (gloo) with FSDP2 (``fully_shard``): a teacher sharded like its student.

One torchrun job (tests/core/fsdp_teacher_worker.py) runs every scenario; the tests below
read its results. The worker's collectives time out after 60 s and the job after 300 s.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

GRANULARITIES = ("tensor", "layer", "channel", "neuron")
NORMS = ("eman", "batch", "copy", "own")


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    worker = Path(__file__).with_name("fsdp_teacher_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def load(scenario):
        return [torch.load(out / f"{scenario}.rank{r}.pt", weights_only=True) for r in (0, 1)]

    return load


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("norm", NORMS)
def test_sharded_teacher_equals_unsharded_bit_for_bit(fsdp_runs, granularity, norm):
    for rank, runs in enumerate(fsdp_runs("parity")):
        run = runs[f"{granularity}-{norm}"]
        assert run["steps"] == 20 and run["all_dtensor"]
        assert run["sharded"].keys() == run["plain"].keys()
        for name, t in run["plain"].items():
            assert torch.equal(run["sharded"][name], t), f"rank {rank}: {name}"
        # not vacuous: the teacher moved (p = 0.5 over 20 updates)
        assert not torch.equal(run["plain"]["0.weight"], run["start"]["0.weight"])


def test_sharded_ema_equals_unsharded_and_holds_uneven_shards(fsdp_runs):
    r0, r1 = fsdp_runs("parity")
    for run in (r0["ema-eman"], r1["ema-eman"]):
        for name, t in run["plain"].items():
            assert torch.equal(run["sharded"][name], t), name
    # 5 conv rows and 3 linear rows over 2 ranks: 3 + 2 and 2 + 1, no full tensor on a rank
    assert r0["ema-eman"]["local_shapes"]["0.weight"] == (3, 3, 3, 3)
    assert r1["ema-eman"]["local_shapes"]["0.weight"] == (2, 3, 3, 3)
    assert r0["ema-eman"]["local_shapes"]["4.weight"] == (2, 80)
    assert r1["ema-eman"]["local_shapes"]["4.weight"] == (1, 80)


@pytest.mark.parametrize("granularity", ("channel", "neuron", "layer"))
def test_dcp_checkpoint_resumes_the_uninterrupted_run(fsdp_runs, granularity):
    for runs in fsdp_runs("resume"):
        run = runs[granularity]
        assert run["seed"] == 5 and run["step"] == 20  # the checkpoint's, not the fresh teacher's 99 / 10
        assert run["files"] == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # each rank wrote its shard
        for name, t in run["whole"].items():
            assert torch.equal(run["resumed"][name], t), name


def test_mismatched_student_names_the_first_tensor(fsdp_runs):
    for runs in fsdp_runs("mismatch"):
        for key in ("plain", "columns", "reverse"):
            assert runs[key] is not None and "\n" not in runs[key]
        assert runs["plain"].startswith("student tensor '0.weight' is a plain tensor of shape (5, 3, 3, 3)")
        assert runs["columns"].startswith("student tensor '4.weight' is a DTensor with placements (Shard(dim=1),)")
        assert "the teacher's is a DTensor with placements (Shard(dim=0),)" in runs["columns"]
        assert runs["reverse"].startswith("student tensor '0.weight' is a DTensor")
        assert runs["reverse"].endswith("shard the student as the teacher (the same fully_shard calls and mesh)")


def test_fsdp1_student_names_fsdp2(fsdp_runs):
    for runs in fsdp_runs("fsdp1"):
        assert runs["built"], runs.get("why")
        assert runs["error"] == ("student is wrapped with FSDP1 (torch.distributed.fsdp.FullyShardedDataParallel), "
                                 "which is not supported; the supported form is FSDP2: "
                                 "torch.distributed.fsdp.fully_shard(student)")


def test_sharded_update_gathers_nothing(fsdp_runs):
    for runs in fsdp_runs("collectives"):
        # per update: the non-finite verdict and the BN statistics' average (DDP's rules), no all-gather
        assert runs["update_calls"] == ["all_reduce", "all_reduce"] * 5
        assert runs["forward_calls"] == ["all_gather_single", "all_gather_single"]  # the counter sees FSDP's gathers
