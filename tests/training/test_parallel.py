"""parallel=fsdp: config checks in one process, and a 2-rank gloo run through torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.training import config, parallel

TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.warmup_epochs=0",
        "optim.schedule=constant", "teacher.momentum_schedule=constant", "eval.every_epochs=1",
        "eval.probe_size=32", "eval.at_start=true", "teacher.granularity=neuron", "parallel=fsdp"]


def test_fsdp_with_shufflebn_is_one_line_error():
    with pytest.raises(ValueError) as err:
        config.load("byol_digits", ["parallel=fsdp", "norm_baseline=shufflebn", "teacher.norm=batch"])
    assert str(err.value) == ("parallel=fsdp does not support norm_baseline=shufflebn with teacher.norm=batch "
                              "(ShuffleBN forwards other ranks' samples through the sharded teacher); use parallel=ddp")


def test_unknown_parallel_names_the_choices():
    with pytest.raises(ValueError, match=r"^parallel='zero3' is not one of ddp, fsdp"):
        config.load("byol_digits", ["parallel=zero3"])


def test_shard_refuses_a_shufflebn_model_before_sharding():
    model = nn.Module()
    model.student = nn.Linear(2, 2)
    model.shuffle_bn = True
    with pytest.raises(ValueError, match=r"^parallel=fsdp does not support ShuffleBN \(norm_baseline=shufflebn\)"):
        parallel.shard(model, Teacher(model.student))


def _torchrun(args, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stsmooth", "train", "byol_digits", *TINY, *args, f"out={out}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_fsdp_run_checkpoints_full_tensors_resumes_and_equals_ddp_bit_for_bit(tmp_path):
    _torchrun(["optim.epochs=2"], tmp_path / "whole")
    _torchrun(["optim.epochs=1"], tmp_path / "split")
    state = torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)  # plain tensors, no DTensor
    assert state["teacher"]["module"]["backbone.conv1.weight"].shape == (8, 1, 3, 3)  # gathered, not a shard
    assert "student.backbone.conv1.weight" in state["optimizer"]["state"]  # FSDP's full optimizer state
    _torchrun(["optim.epochs=2", "resume=true"], tmp_path / "split")
    results = json.loads((tmp_path / "whole/results.json").read_text())
    assert results["distributed"] == {"world_size": 2, "teacher_max_abs_diff": 0.0}
    assert results["teacher"]["knn_top1"] > 50
    # DDP on the same data: two-rank sums of gradients are exact, and both broadcast rank 0's buffers
    _torchrun(["optim.epochs=2", "parallel=ddp"], tmp_path / "ddp")
    assert 0 in torch.load(tmp_path / "ddp/checkpoints/last.pt", weights_only=True)["optimizer"]["state"]  # DDP's ids
    for name in ("teacher", "student"):
        whole = load_file(tmp_path / f"whole/{name}.safetensors")
        for other in ("split", "ddp"):
            got = load_file(tmp_path / f"{other}/{name}.safetensors")
            assert whole.keys() == got.keys()
            for key, t in whole.items():
                assert torch.equal(got[key], t), f"{other} {name} {key}"
