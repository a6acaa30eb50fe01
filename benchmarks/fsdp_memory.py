"""Bytes per rank of the teacher: FSDP2-sharded on 2 ranks vs unsharded (issue 12, FSDP row).

Builds a ResNet-50 backbone (23.5M parameters, no classifier) on each of 2 gloo CPU ranks, shards one copy with
``fully_shard`` (each bottleneck block, then the root) and builds ``Teacher`` from the
sharded and from an unsharded copy. Measured: the bytes of the distinct storages behind
the teacher's parameters and buffers on each rank (FSDP2's padded shards included; an
update's temporaries are freed and not counted). Also checks that the gathered sharded
teacher equals the unsharded one after 3 updates (neuron-wise, p=0.7).

    python benchmarks/fsdp_memory.py            # launches itself under torchrun, 2 ranks
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch


def storage_bytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages holding ``module``'s parameters (local shards) and buffers."""
    from stsmooth.core.distributed import local_shard

    seen: dict[int, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        local = local_shard(t)[0]
        storage = local.untyped_storage()
        if storage.nbytes():
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def worker() -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from stsmooth import Teacher
    from stsmooth.core.distributed import full_state_dict, local_shard
    from stsmooth.models import build

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    plain = build("resnet50")
    torch.manual_seed(0)
    sharded = build("resnet50")
    for name, mod in sharded.named_modules():
        if type(mod).__name__ == "Bottleneck":
            fully_shard(mod)
    fully_shard(sharded)
    unsharded_teacher = Teacher(plain, momentum=0.99, preserve_prob=0.7, granularity="neuron", seed=1)
    sharded_teacher = Teacher(sharded, momentum=0.99, preserve_prob=0.7, granularity="neuron", seed=1)
    n_params = sum(p.numel() for p in plain.parameters())
    full_bytes = storage_bytes(unsharded_teacher.module)
    shard_bytes = storage_bytes(sharded_teacher.module)
    with torch.no_grad():
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            s_params = dict(sharded.named_parameters())
            for name, p in plain.named_parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-3)
                local, offset = local_shard(s_params[name])
                local.copy_(p[offset[0] : offset[0] + local.shape[0]])
            unsharded_teacher.update(plain)
            sharded_teacher.update(sharded)
    gathered = full_state_dict(sharded_teacher.module)
    same = all(torch.equal(gathered[k], v) for k, v in unsharded_teacher.module.state_dict().items())
    sizes = [None, None]
    dist.all_gather_object(sizes, (full_bytes, shard_bytes))
    if rank == 0:
        print(f"ResNet-50, {n_params / 1e6:.1f}M parameters, float32, 2 gloo CPU ranks (torch {torch.__version__})")
        print(f"{'rank':>4}  {'unsharded teacher (bytes)':>26}  {'FSDP2 teacher (bytes)':>22}  {'ratio':>6}")
        for r, (full, shard) in enumerate(sizes):
            print(f"{r:>4}  {full:>26,}  {shard:>22,}  {shard / full:>6.3f}")
        print(f"gathered sharded teacher == unsharded after 3 neuron-wise updates: {same}")
    dist.destroy_process_group()


if __name__ == "__main__":
    if "RANK" in os.environ:
        worker()
    else:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__]
        sys.exit(subprocess.call(cmd, env=env))
