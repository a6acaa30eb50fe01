"""Run by tests/core/test_fsdp.py under torchrun (2 gloo ranks): FSDP2-sharded teachers.

Usage: ``torchrun --nproc_per_node 2 fsdp_teacher_worker.py OUT``; every scenario writes
``OUT/SCENARIO.rankR.pt`` (tensors, flags and error messages).

The model has 5 conv channels and 3 linear rows, so the shards are uneven (rank 0 holds
3 and 2 rows, rank 1 holds 2 and 1).
"""

import sys
import warnings
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import Shard

from stsmooth.core import distributed
from stsmooth.core.teacher import Teacher

GRANULARITIES = ("tensor", "layer", "channel", "neuron")
NORMS = ("eman", "batch", "copy", "own")


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(80, 3))


def shard(model, placement=None):
    """``fully_shard`` the conv and the root (the linear and BN go with the root)."""
    fn = None if placement is None else (lambda p: placement.get(id(p)))
    fully_shard(model[0], shard_placement_fn=fn)
    fully_shard(model, shard_placement_fn=fn)
    return model


def twins(seed=0):
    """The same network twice: plain (every rank holds all of it) and FSDP2-sharded."""
    plain = tiny(seed)
    sharded = tiny(seed)
    return plain, shard(sharded)


@torch.no_grad()
def move_students(plain, sharded, step):
    """New student values, the same on all ranks for parameters, rank-local for BN statistics.

    The plain student gets the full tensors, the sharded one its rows of them.
    """
    g = torch.Generator().manual_seed(1000 + step)
    s_params = dict(sharded.named_parameters())
    for name, p in plain.named_parameters():
        p.add_(torch.randn(p.shape, generator=g) * 0.1)
        local, offset = distributed.local_shard(s_params[name])
        local.copy_(p[offset[0]: offset[0] + local.shape[0]])
    r = torch.Generator().manual_seed(2000 + 10 * step + dist.get_rank())
    s_buffers = dict(sharded.named_buffers())
    for name, b in plain.named_buffers():
        if b.is_floating_point():
            b.copy_(torch.rand(b.shape, generator=r) + 0.5)
        else:
            b.add_(1)
        s_buffers[name].copy_(b)


def run_pair(granularity, norm, p, m, steps=20, seed=123):
    plain, sharded = twins()
    ref = Teacher(plain, momentum=m, preserve_prob=p, granularity=granularity, norm=norm, seed=seed)
    sh = Teacher(sharded, momentum=m, preserve_prob=p, granularity=granularity, norm=norm, seed=seed)
    start = {k: v.clone() for k, v in ref.module.state_dict().items()}
    x_gen = torch.Generator().manual_seed(7 + dist.get_rank())
    for step in range(steps):
        move_students(plain, sharded, step)
        x = torch.randn(4, 3, 6, 6, generator=x_gen)
        ref(x), sh(x)  # batch/own: the teachers' own statistics see this rank's batch
        ref.update(plain)
        sh.update(sharded)
    full = distributed.full_state_dict(sh.module)
    local_shapes = {n: tuple(distributed.local_shard(t)[0].shape) for n, t in sh.module.named_parameters()}
    return {"sharded": full, "plain": ref.module.state_dict(), "start": start, "steps": sh.step,
            "local_shapes": local_shapes,
            "all_dtensor": all(distributed.is_dtensor(t) for t in sh.module.parameters())}


def scenario_parity(out):
    results = {}
    for granularity in GRANULARITIES:
        for norm in NORMS:
            results[f"{granularity}-{norm}"] = run_pair(granularity, norm, p=0.5, m=0.9)
    results["ema-eman"] = run_pair("layer", "eman", p=0.0, m=0.9)
    return results


def scenario_resume(out):
    """10 updates, a DCP checkpoint, a fresh teacher (other seed) loads it, 10 more == 20 uninterrupted."""
    results = {}
    for granularity in ("channel", "neuron", "layer"):
        plain, sharded = twins()
        whole = Teacher(sharded, momentum=0.9, preserve_prob=0.5, granularity=granularity, seed=5)
        first = Teacher(sharded, momentum=0.9, preserve_prob=0.5, granularity=granularity, seed=5)
        for step in range(20):
            move_students(plain, sharded, step)
            whole.update(sharded)
            if step < 10:
                first.update(sharded)
            if step == 9:
                path = Path(out) / f"dcp-{granularity}"
                dcp.save(first.state_dict(), checkpoint_id=str(path))
                second = Teacher(sharded, momentum=0.9, preserve_prob=0.5, granularity=granularity, seed=99)
                state = second.state_dict()
                dcp.load(state, checkpoint_id=str(path))
                second.load_state_dict(state)
                files = sorted(f.name for f in path.iterdir())
            if step >= 10:
                second.update(sharded)
        results[granularity] = {"whole": distributed.full_state_dict(whole.module),
                                "resumed": distributed.full_state_dict(second.module),
                                "seed": second.seed, "step": second.step, "files": files}
    return results


def _error(fn):
    try:
        fn()
    except ValueError as err:
        return str(err)
    return None


def scenario_mismatch(out):
    _, sharded = twins()
    teacher = Teacher(sharded, granularity="neuron", preserve_prob=0.5)
    plain = tiny()
    other = tiny()
    placement = {id(other[4].weight): Shard(1)}  # the linear weight split by columns instead of rows
    shard(other, placement)
    ddp_like = tiny()  # an unsharded teacher, a sharded student
    plain_teacher = Teacher(ddp_like)
    return {"plain": _error(lambda: teacher.update(plain)),
            "columns": _error(lambda: teacher.update(other)),
            "reverse": _error(lambda: plain_teacher.update(sharded))}


def scenario_collectives(out):
    """Which collectives 5 sharded updates call: no gathers, only the BN statistics' all-reduce (the DDP rule)."""
    plain, sharded = twins()
    teacher = Teacher(sharded, momentum=0.9, preserve_prob=0.5, granularity="neuron", norm="eman", seed=3)
    import torch.distributed._functional_collectives as funcol

    calls = []
    names = [(dist, n) for n in ("all_gather", "all_gather_into_tensor", "all_gather_single", "_all_gather_base",
                                 "reduce_scatter_tensor", "all_reduce", "broadcast")]
    names += [(funcol, "all_gather_tensor")]  # DTensor's full_tensor / redistribute
    saved = {(m, n): getattr(m, n) for m, n in names}

    def counting(key):
        def call(*args, **kwargs):
            calls.append(key[1])
            return saved[key](*args, **kwargs)
        return call

    def counted(fn):
        calls.clear()
        for key in names:
            setattr(*key, counting(key))
        try:
            fn()
        finally:
            for key in names:
                setattr(*key, saved[key])
        return list(calls)

    updates = []
    for step in range(5):
        move_students(plain, sharded, step)
        updates += counted(lambda: teacher.update(sharded))
    # the control: a forward of the sharded teacher does gather its parameters
    forward = counted(lambda: teacher(torch.randn(2, 3, 6, 6)))
    return {"update_calls": updates, "forward_calls": forward}


def scenario_fsdp1(out):
    from torch.distributed.fsdp import FullyShardedDataParallel

    try:
        wrapped = FullyShardedDataParallel(tiny(), device_id=torch.device("cpu"))
    except Exception as err:  # noqa: BLE001 - FSDP1 may refuse CPU; the test reports it
        return {"built": False, "why": f"{type(err).__name__}: {err}"}
    return {"built": True, "error": _error(lambda: Teacher(wrapped))}


SCENARIOS = {"parity": scenario_parity, "resume": scenario_resume, "mismatch": scenario_mismatch,
             "collectives": scenario_collectives, "fsdp1": scenario_fsdp1}


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(SCENARIOS)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    warnings.simplefilter("ignore")
    for name in names:
        torch.save(SCENARIOS[name](out), Path(out) / f"{name}.rank{dist.get_rank()}.pt")
    dist.barrier()
    dist.destroy_process_group()
    distributed.end_worker(0)  # results on disk; gloo's teardown aborted now and then
if __name__ == "__main__":
    main()
