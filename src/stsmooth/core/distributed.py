"""torchrun detection and the few collective helpers the library needs.

Everything works in one plain process: without an initialised process group
the helpers return their input (rank 0 of a world of 1).
"""

from __future__ import annotations

import copy
import datetime
import os
import sys
from typing import NoReturn

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    """torchrun sets these variables for every worker."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def end_worker(status: int) -> NoReturn:
    """End this torchrun worker with ``status`` now, without the interpreter's teardown.

    Call it once everything is on disk. After gloo runs that teardown aborted now and then
    ("terminate called without an active exception", after ``destroy_process_group`` had
    returned: a SIGABRT for torchrun instead of the status), and with a hung peer it can block.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def init_from_env(backend: str | None = None, timeout_minutes: float | None = None) -> torch.device:
    """Initialise the process group when launched by torchrun; pick this rank's device.

    Args:
        backend: ``nccl`` / ``gloo``; None picks by device.
        timeout_minutes: how long a collective waits for a peer before it fails (a hung or
            dead rank then ends the run); None keeps PyTorch's default (30 min gloo, 10 min nccl).

    Returns:
        ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if launched_by_torchrun() and not dist.is_initialized():
        timeout = None if timeout_minutes is None else datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"), timeout=timeout)
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s integer on every rank (one collective, used once at construction)."""
    if not is_distributed():
        return int(value)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.broadcast(t, src)
    return int(t.item())


def _collective_device() -> torch.device:
    """Where a collective must run: NCCL only moves CUDA tensors, gloo is used on CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def max_int(value: int) -> int:
    """The largest of the ranks' integers (one tiny all-reduce); ``value`` itself without a group."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


@torch.no_grad()
def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` with rank ``src``'s, in place: one broadcast per dtype.

    Bits are copied, not averaged, so every rank ends with exactly rank ``src``'s values.
    """
    if not is_distributed() or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1).to(_collective_device()) for t in group])
        dist.broadcast(flat, src)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def all_gather_concat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank along dim 0; ``x`` itself without a group."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def average_(tensors: list[torch.Tensor]) -> None:
    """Average floating tensors across ranks in place, in one flat all-reduce."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


# --- FSDP2 (torch.distributed.fsdp.fully_shard): sharded students and teachers -----------------
#
# FSDP2 keeps each parameter as a DTensor whose local shard lives on this rank, registered on
# the module between forwards, and leaves buffers (BatchNorm statistics) as plain per-rank
# tensors. A sharded module refuses copy.deepcopy, so the teacher is built as an unsharded
# copy of the student's structure on the meta device (no memory), sharded the same way, then
# filled from the student's local shards: no rank ever holds a full parameter.


def is_fsdp1(module: torch.nn.Module) -> bool:
    """Whether ``module`` or a submodule is wrapped by the old ``FullyShardedDataParallel`` (FSDP1)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        return False
    return any(isinstance(m, FullyShardedDataParallel) for m in module.modules())


def fsdp_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(name, submodule)`` of every submodule ``fully_shard`` was applied to, in pre-order."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return []
    return [(n, m) for n, m in module.named_modules() if isinstance(m, FSDPModule)]


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether ``module`` is (partly) sharded with FSDP2's ``fully_shard``."""
    return bool(fsdp_modules(module))


def is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local_shard(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """This rank's part of ``t`` and the global index of its first element, one offset per dim.

    Args:
        t: a DTensor (FSDP2 parameter, e.g. ``Shard(0)``, possibly uneven: the last ranks hold
            fewer or no rows) or a plain tensor (a replicated buffer: all of it, offset 0).

    Returns:
        ``(local, offset)``: ``local`` shares memory with ``t``'s shard (writes update ``t``);
        ``local[idx]`` is ``t_full[offset + idx]``.
    """
    if not is_dtensor(t):
        return t, (0,) * t.dim()
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = t.to_local()
    shape, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    if tuple(local.shape) != tuple(shape):  # pragma: no cover - a DTensor layout we do not know
        raise ValueError(f"local shard of shape {tuple(local.shape)} but its placements give {tuple(shape)}")
    return local, tuple(int(o) for o in offset)


def layout(t: torch.Tensor) -> tuple:
    """What two tensors must share to be updated shard by shard: placements, local shape and offset."""
    if not is_dtensor(t):
        return ("replicated", tuple(t.shape))
    local, offset = local_shard(t)
    return (tuple(t.placements), tuple(local.shape), offset)


def _is_fsdp_hook(hook) -> bool:
    fn = getattr(hook, "__func__", hook)
    return getattr(fn, "__module__", "").startswith("torch.distributed.fsdp")


def _meta_copy(module: torch.nn.Module, memo: dict) -> torch.nn.Module:
    """An unsharded copy of ``module``'s structure: parameters on the meta device, buffers on meta too.

    What ``copy.deepcopy`` would give for a module that ``fully_shard`` never touched: the
    original classes, the user's hooks and attributes, tied parameters still tied; FSDP's
    class swap, state and hooks are left out.
    """
    from torch.distributed.fsdp import FSDPModule

    if id(module) in memo:
        return memo[id(module)]
    cls = type(module)
    if isinstance(module, FSDPModule):
        cls = cls.__mro__[2]  # FSDP<Orig> -> FSDPModule -> Orig (FSDPModule's own note on its MRO)
    new = cls.__new__(cls)
    memo[id(module)] = new
    fsdp_keys = {"_is_fsdp_managed_module", "_fsdp_use_orig_params"}
    dropped: set[int] = set()
    for key, value in module.__dict__.items():
        if key in fsdp_keys or key.startswith("__composable_api_state_key"):
            continue
        if key == "_parameters":
            params = {}
            for n, p in value.items():
                if p is None or id(p) in memo:
                    params[n] = None if p is None else memo[id(p)]
                    continue
                meta = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"), p.requires_grad)
                memo[id(p)] = params[n] = meta
            new.__dict__[key] = params
        elif key == "_buffers":
            new.__dict__[key] = {n: None if b is None else torch.empty(b.shape, dtype=b.dtype, device="meta")
                                 for n, b in value.items()}
        elif key == "_modules":
            new.__dict__[key] = {n: None if m is None else _meta_copy(m, memo) for n, m in value.items()}
        elif key.endswith("_hooks") and isinstance(value, dict):
            kept = type(value)()
            for hid, h in value.items():
                if _is_fsdp_hook(h):
                    dropped.add(hid)
                else:
                    kept[hid] = copy.deepcopy(h, memo)
            new.__dict__[key] = kept
        else:
            new.__dict__[key] = copy.deepcopy(value, memo)
    for key in ("_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
        if key in new.__dict__:
            new.__dict__[key] = type(new.__dict__[key])(
                (k, v) for k, v in new.__dict__[key].items() if k not in dropped)
    return new


@torch.no_grad()
def sharded_copy(student: torch.nn.Module) -> torch.nn.Module:
    """A copy of an FSDP2-sharded ``student``, sharded the same way, holding the student's values.

    Every submodule ``fully_shard`` was applied to in the student gets ``fully_shard`` in the
    copy (children first), on the student's mesh, with each parameter placed as the student's
    (``shard_placement_fn``) and resharded after every forward (the teacher never runs a
    backward). Local shards and buffers are then copied from the student's: no all-gather.

    Args:
        student: a module sharded with ``torch.distributed.fsdp.fully_shard``.

    Returns:
        The copy; its parameters are DTensors with the student's placements.
    """
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard

    copy_ = _meta_copy(student, {})
    placement = {}
    s_params = dict(student.named_parameters())
    t_params = dict(copy_.named_parameters())
    mesh = None
    for name, p in s_params.items():
        if is_dtensor(p):
            mesh = p.device_mesh if mesh is None else mesh
            shard = [pl for pl in p.placements if isinstance(pl, Shard)]
            placement[id(t_params[name])] = shard[0] if shard else Shard(0)
    for name, s_mod in reversed(fsdp_modules(student)):
        state = s_mod._get_fsdp_state()
        mp_policy = getattr(state, "_mp_policy", None)
        kwargs = {"mp_policy": mp_policy} if mp_policy is not None else {}
        fully_shard(copy_.get_submodule(name), mesh=mesh, reshard_after_forward=True,
                    shard_placement_fn=lambda p: placement.get(id(p)), **kwargs)
    device = next((p.to_local().device for p in s_params.values() if is_dtensor(p)), torch.device("cpu"))
    copy_.to_empty(device=device)
    t_params = dict(copy_.named_parameters())
    for name, p in s_params.items():
        local_shard(t_params[name])[0].copy_(local_shard(p)[0])
    t_buffers = dict(copy_.named_buffers())
    for name, b in student.named_buffers():
        t_buffers[name].copy_(b)
    init_root(copy_)
    return copy_


def init_root(module: torch.nn.Module) -> None:
    """Make ``module`` the FSDP2 root now, so that its sharded children may also be called alone.

    FSDP2 decides the root at the first forward; a child called first (an evaluation of
    ``teacher.module.backbone``) would become a root itself and the whole module's later
    forward would fail ("already been lazily initialized").
    """
    state = module._get_fsdp_state() if hasattr(module, "_get_fsdp_state") else None
    if state is not None:
        state._lazy_init()


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every DTensor gathered into a full tensor (a collective)."""
    return {k: v.full_tensor() if is_dtensor(v) else v for k, v in module.state_dict().items()}


def shard_like(reference: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each full tensor cut to this rank's shard where ``reference`` holds a DTensor.

    Lets a full (gathered) state dict load into a sharded module: ``module.load_state_dict(
    shard_like(module.state_dict(), full))``; DTensors and tensors already of the reference's
    kind pass through.
    """
    from torch.distributed.tensor import DTensor

    out = dict(state)
    for key, ref in reference.items():
        value = state.get(key)
        if value is None or not is_dtensor(ref) or is_dtensor(value):
            continue
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"state tensor {key!r} has shape {tuple(value.shape)} but the module's is {tuple(ref.shape)}")
        local, offset = local_shard(ref)
        part = value[tuple(slice(o, o + n) for o, n in zip(offset, local.shape))]
        out[key] = DTensor.from_local(part.to(local.device), ref.device_mesh, ref.placements,
                                      shape=ref.shape, stride=ref.stride())
    return out
