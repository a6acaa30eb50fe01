"""Two CPU processes (gloo) with DDP: teachers stay bit-identical across ranks, ShuffleBN is global.

One torchrun job (tests/core/ddp_teacher_worker.py) runs every scenario; the tests below read
its results. The worker's collectives time out after 30 s, so a rank left alone in a
collective fails the job instead of hanging it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from stsmooth.core import distributed
from stsmooth.core.norm import shuffle_bn_forward

GRANULARITIES = ("tensor", "layer", "channel", "neuron")
NORMS = ("eman", "batch", "copy", "own")


def test_helpers_without_process_group():
    x = torch.arange(6).reshape(3, 2)
    assert distributed.all_gather_concat(x) is x
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.broadcast_int(7) == 7
    distributed.average_([x.float()])  # no-op
    y = x.clone()
    distributed.broadcast_([y])  # no-op
    assert torch.equal(y, x)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    worker = Path(__file__).with_name("ddp_teacher_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def load(scenario):
        return [torch.load(out / f"{scenario}.rank{r}.pt", weights_only=True) for r in (0, 1)]

    return load


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    for name, t in a.items():
        assert torch.equal(t, b[name]), f"{what}: {name}"


def test_two_ranks_identical_teachers(ddp_runs):
    r0, r1 = ddp_runs("identical")
    for gran in ("tensor", "layer", "channel", "neuron", "layer/batch", "neuron/own"):
        # the ranks' own students saw different data, so their local BN statistics differ ...
        assert not torch.equal(r0[gran + "/student_bn"], r1[gran + "/student_bn"])
        # ... yet the teachers, parameters and BN statistics, are identical bit for bit
        _assert_same(r0[gran], r1[gran], gran)


@pytest.mark.parametrize("scenario", ["after_warmup", "before_ddp"])
def test_teacher_built_from_rank_local_student_is_rank0s(ddp_runs, scenario):
    """Issue 8 item 3: a student that differs across ranks when the teacher is built."""
    r0, r1 = ddp_runs(scenario)
    for gran in GRANULARITIES:
        for norm in NORMS:
            key = f"{gran}/{norm}"
            s0, s1 = r0[key + "/student_at_build"], r1[key + "/student_at_build"]
            differs = "1.running_mean" if scenario == "after_warmup" else "0.weight"
            assert not torch.equal(s0[differs], s1[differs])  # the students did differ
            if scenario == "after_warmup":
                # every rank starts from rank 0's student, not an average of the ranks'
                _assert_same(r1[key + "/teacher_at_build"], s0, key + " at build")
            # 20 updates later: parameters and buffers identical bit for bit
            _assert_same(r0[key], r1[key], key)


@pytest.mark.parametrize("mode, verdict", [("raise", 2), ("skip", 1)])
def test_nonfinite_on_one_rank_is_agreed_by_all(ddp_runs, mode, verdict):
    """Issue 8 item 4: a NaN in rank 1's student only; both ranks raise/skip the same update."""
    r0, r1 = ddp_runs("nonfinite")
    expected = [0, verdict, 0, 0]  # 0: applied, 1: skipped with a warning, 2: raised
    assert r0[mode + "/events"].tolist() == expected
    assert r1[mode + "/events"].tolist() == expected
    assert int(r0[mode + "/step"]) == int(r1[mode + "/step"]) == 3
    _assert_same(r0[mode], r1[mode], mode)


def _linear_bn(state):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.load_state_dict(state)
    return model


def _reference_shuffle(model, x, perm, groups):
    """MoCo's ShuffleBN re-derived: sub-batch j forwards x[perm[j*s:(j+1)*s]] and writes back at those rows."""
    out = torch.empty(x.shape[0], 4)
    for idx in perm.chunk(groups):
        out[idx] = model(x[idx]).detach()
    return out


def test_shuffle_bn_is_global_across_ranks(ddp_runs):
    """Issue 8 item 2: the global batch of both ranks is shuffled, as MoCo's _batch_shuffle_ddp does."""
    r0, r1 = ddp_runs("shuffle")
    model = _linear_bn(r0["model"])
    x = torch.cat([r0["x"], r1["x"]])
    out = torch.cat([r0["out"], r1["out"]])
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))  # rank 0's generator
    torch.testing.assert_close(out, _reference_shuffle(model, x, perm, 2), rtol=0, atol=1e-6)
    # the one-process form on the global batch, same permutation, gives the same keys
    one = shuffle_bn_forward(model, x, groups=2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, one, rtol=0, atol=1e-6)
    # rank 1 changed its images, rank 0 did not: rank 0's keys changed all the same
    assert torch.equal(r0["x2"], r0["x"])
    assert not torch.allclose(r0["out2"], r0["out"], atol=1e-3)
    x2 = torch.cat([r0["x2"], r1["x2"]])
    torch.testing.assert_close(torch.cat([r0["out2"], r1["out2"]]), _reference_shuffle(model, x2, perm, 2),
                               rtol=0, atol=1e-6)
    # four sub-batches over two ranks
    perm4 = torch.randperm(8, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(torch.cat([r0["out4"], r1["out4"]]), _reference_shuffle(model, x, perm4, 4),
                               rtol=0, atol=1e-6)
    # per-sample (eval-mode) BN: outputs come back in each rank's original order
    for r in (r0, r1):
        torch.testing.assert_close(r["eval_out"], r["eval_plain"], rtol=0, atol=1e-6)
    assert torch.equal(r0["rng_after"], r1["rng_after"])
    for r in (r0, r1):
        assert r["unequal_error"] == "ShuffleBN needs the same batch size on every rank, got [4, 3]"


def test_shuffle_bn_one_process_sub_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(12, 3)
    out = shuffle_bn_forward(model, x, groups=3, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, _reference_shuffle(model, x, perm, 3), rtol=0, atol=1e-6)
    # default: two sub-batches in one process
    out2 = shuffle_bn_forward(model, x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out2, _reference_shuffle(model, x, perm, 2), rtol=0, atol=1e-6)
    assert not out2.requires_grad  # keys carry no gradient (MoCo: "no gradient to keys")
    with pytest.raises(ValueError, match="groups=5"):
        shuffle_bn_forward(model, x, groups=5)
    with pytest.raises(ValueError, match="groups=0"):
        shuffle_bn_forward(model, x, groups=0)


def test_end_worker_flushes_and_exits_with_the_status_skipping_teardown():
    code = ("import atexit, sys\n"
            "from stsmooth.core.distributed import end_worker\n"
            "atexit.register(lambda: print('teardown ran'))\n"
            "print('buffered', end='')\n"
            "sys.stderr.write('err')\n"
            "end_worker(7)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7
    assert proc.stdout == "buffered" and proc.stderr == "err"  # flushed, and no atexit handler ran
