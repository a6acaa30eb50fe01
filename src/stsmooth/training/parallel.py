"""How a training step runs the method's model: DistributedDataParallel and torch.compile.

The whole method model is wrapped once in DDP, as DINO and nanoGPT wrap
theirs: ``forward`` of every :class:`~stsmooth.methods.contract.MethodModel`
is its loss, so a step calls the wrapper and DDP averages the gradients of
every trainable parameter, the student's and those of heads outside it (BYOL's
predictor), in its buckets. The plain model keeps its own parameter names, so
the teacher update, evaluation and checkpoints use it and never see a wrapper.

DDP broadcasts rank 0's buffers (BatchNorm statistics, MoCo's queue, which is
the same on every rank) at each forward, as it did for the student alone; the
teacher then averages the students' statistics (:class:`~stsmooth.core.teacher.Teacher`).

``parallel=fsdp`` shards instead (FSDP2, ``torch.distributed.fsdp.fully_shard``), as
DINOv2 shards its ViTs: each child of the student that holds parameters (backbone,
projector) is one FSDP unit, then the student, then the whole method model (heads outside
the student, BYOL's predictor). The teacher is rebuilt from the sharded student, sharded
the same way, and smoothed shard by shard. Checkpoints gather full state dicts
(:func:`full_states`), so ``last.pt`` keeps its one-file format and loads into any world
size; ShuffleBN, which forwards other ranks' samples through the teacher, is not supported.
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth.core.distributed import average_, broadcast_, init_root, is_distributed, is_sharded
from stsmooth.core.teacher import Teacher
from stsmooth.methods.contract import MethodModel

PARALLEL = ("ddp", "fsdp")  # how torchrun ranks share the model (the config's `parallel`)


def shard(model: MethodModel, teacher: Teacher) -> Teacher:
    """FSDP2 over ``model`` in place (student children, student, root); returns the teacher rebuilt on its shards.

    Args:
        model: the method's model, unsharded, the same on every rank.
        teacher: its teacher as built for one process; its settings and seed are kept.

    Returns:
        A :class:`Teacher` of the sharded ``model.student`` (its values: the student's).

    Raises:
        ValueError: the model runs its teacher with ShuffleBN (``norm_baseline=shufflebn``).
    """
    from torch.distributed.fsdp import fully_shard

    if getattr(model, "shuffle_bn", False):
        raise ValueError("parallel=fsdp does not support ShuffleBN (norm_baseline=shufflebn): it forwards other ranks' "
                         "samples through the teacher's batch statistics; use parallel=ddp")
    for child in model.student.children():
        if any(True for _ in child.parameters()):
            fully_shard(child)
    fully_shard(model.student)
    fully_shard(model)
    init_root(model)  # evaluations call the student and its backbone alone, maybe before any step
    # FSDP2 leaves buffers rank-local; rank 0's at every training forward, as DDP's
    # broadcast_buffers, keeps the students' BN statistics (and a checkpoint's, which holds
    # rank 0's) the same on every rank, so a resumed run continues the uninterrupted one
    model.register_forward_pre_hook(_broadcast_buffers)
    return Teacher(model.student, momentum=teacher.momentum, preserve_prob=teacher.preserve_prob,
                   granularity=teacher.granularity, norm=teacher.norm, seed=teacher.seed,
                   nonfinite=teacher.nonfinite, kernel=getattr(teacher, "kernel", "auto"))


def _broadcast_buffers(module: nn.Module, args) -> None:
    if module.training:
        broadcast_(list(module.buffers()))


def average_norm_statistics(student: nn.Module) -> None:
    """Averages the student's BatchNorm running statistics across ranks, in place (at each epoch's end).

    Each rank's last forwards moved its own statistics; DDP re-broadcasts rank 0's only at
    the next training forward. Averaged before the epoch's checkpoint, the student that is
    evaluated (every rank its share), saved and exported is one network: the statistics of
    all ranks' batches, as the teacher's (:meth:`~stsmooth.core.teacher.Teacher._reconciled`).
    A no-op in one process.
    """
    if is_distributed():
        average_([b for m in student.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                  for b in (m.running_mean, m.running_var) if b is not None])


def full_states(model: nn.Module, optimizer: torch.optim.Optimizer, teacher: Teacher) -> dict:
    """Full (gathered) state dicts of a sharded run, on every rank: ``{"model", "optimizer", "teacher"}``.

    A collective: every rank calls it. The optimizer's state is keyed by parameter name
    (``torch.distributed.checkpoint.state_dict``'s full form).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    from stsmooth.core.distributed import full_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    teacher_sd = teacher.state_dict()
    teacher_sd["module"] = full_state_dict(teacher.module)
    return {"model": model_sd, "optimizer": optim_sd, "teacher": teacher_sd}


def load_full_states(model: nn.Module, optimizer: torch.optim.Optimizer, teacher: Teacher, state: dict) -> None:
    """Load :func:`full_states`' output into a sharded run: each rank keeps its rows."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=StateDictOptions(full_state_dict=True))
    teacher.load_state_dict(state["teacher"])


def wrap(model: MethodModel, device: torch.device, compile: bool = False) -> nn.Module:
    """What a training step calls: ``model`` itself, or DDP around it under torchrun.

    Args:
        model: the method's model; stays the owner of the parameters.
        device: the rank's device.
        compile: ``torch.compile`` the student in place (its ``state_dict`` names do not change).

    Returns:
        A module whose call ``(batch, teacher, step)`` returns ``model.loss``'s ``(loss, logs)``.
    """
    if compile:
        model.student.compile()
    if not is_distributed() or is_sharded(model):  # FSDP2: the sharded model is its own wrapper
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
