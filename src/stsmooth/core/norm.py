"""What the teacher's BatchNorm does, and ShuffleBN.

All teacher-normalisation behaviour lives here, in one table:

==========  =============================  ==========================================  ===================
``norm``    teacher BN normalises with     teacher running statistics come from        paper
==========  =============================  ==========================================  ===================
``eman``    its running statistics         smoothed from the student's, same rule and  003 Eq. 8-9
            (eval-mode BN)                 draws as their layer
``batch``   the batch's statistics         its own batches (standard train-mode BN)    003 Table 1 "BN"
            (train-mode BN)
``copy``    its running statistics         the student's, whenever their layer's       003 Eq. 9, m=0:
                                           unit is drawn: every update at p=0,         Table 8
                                           never at p=1                                "student PN"
``own``     its running statistics         its own batches, updated after use          003 Table 8
                                                                                        "teacher PN"
==========  =============================  ==========================================  ===================

The table is data, :data:`BN_MODES` (one :class:`BNMode` per row), which
:class:`stsmooth.Teacher` reads. ``eman`` and ``copy`` move the running statistics
under the draws of their layer (``copy`` with m=0, so at p=1 its teacher is unchanged
like every other); ``batch`` and ``own`` leave them to the teacher's own batches and
smooth parameters only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from stsmooth.core import distributed


class NormalisesWith(enum.Enum):
    """What the teacher's BN normalises with (the table's first column)."""

    RUNNING = "its running statistics"  # eval-mode BN: a sample's output does not depend on its batch
    BATCH = "the batch's statistics"  # train-mode BN


class StatisticsFrom(enum.Enum):
    """Where the teacher's BN running statistics come from (the table's second column)."""

    SMOOTHED = "smoothed from the student's"  # same rule and draws as their layer (003 Eq. 9)
    COPIED = "the student's, whenever their layer's unit is drawn"  # Eq. 9 with m=0, the same draws
    OWN_BATCHES = "its own batches"  # the teacher's forwards


@dataclass(frozen=True)
class BNMode:
    """One row of the table: what a teacher's BatchNorm does.

    Attributes:
        normalises_with: the statistics the teacher's BN normalises with.
        statistics_from: where its running statistics come from.
        paper: where the mode is defined (paper 003, EMAN).
    """

    normalises_with: NormalisesWith
    statistics_from: StatisticsFrom
    paper: str

    @property
    def smooths_statistics(self) -> bool:
        """The rule moves the running statistics under their layer's draws (``eman``, and ``copy`` with m=0)."""
        return self.statistics_from is not StatisticsFrom.OWN_BATCHES

    @property
    def copies_statistics(self) -> bool:
        """Drawn running statistics take the student's value (m=0) instead of a TMA step ("student PN")."""
        return self.statistics_from is StatisticsFrom.COPIED

    @property
    def copies_from_student(self) -> bool:
        """Buffers the rule does not move (``num_batches_tracked``) are copied from the student at p < 1."""
        return self.statistics_from is not StatisticsFrom.OWN_BATCHES

    @property
    def folds_in_after_use(self) -> bool:
        """Eval-mode BN whose running statistics come from its own batches: a hook folds each batch in after use."""
        return self.normalises_with is NormalisesWith.RUNNING and self.statistics_from is StatisticsFrom.OWN_BATCHES


BN_MODES: dict[str, BNMode] = {
    "eman": BNMode(NormalisesWith.RUNNING, StatisticsFrom.SMOOTHED, "003 Eq. 8-9"),
    "batch": BNMode(NormalisesWith.BATCH, StatisticsFrom.OWN_BATCHES, '003 Table 1 "BN"'),
    "copy": BNMode(NormalisesWith.RUNNING, StatisticsFrom.COPIED, '003 Table 8 "student PN"'),
    "own": BNMode(NormalisesWith.RUNNING, StatisticsFrom.OWN_BATCHES, '003 Table 8 "teacher PN"'),
}
NORMS = tuple(BN_MODES)


def check_norm(norm: str) -> str:
    if norm not in BN_MODES:
        raise ValueError(f"norm={norm!r} is not one of {', '.join(NORMS)}")
    return norm


def batchnorms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def set_teacher_mode(module: nn.Module, norm: str) -> None:
    """Put the teacher's BN layers in the mode ``norm`` asks for.

    The rest of the teacher keeps the mode it has (so Mean Teacher's dropout noise
    can stay on); BN layers that use running statistics are put in eval mode,
    which makes a sample's output independent of its batch companions.
    """
    running = BN_MODES[norm].normalises_with is NormalisesWith.RUNNING
    for bn in batchnorms(module):
        bn.train(not running)


def _own_statistics_hook(bn: _BatchNorm, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    """After an eval-mode forward, fold the batch's statistics into the running ones ("teacher PN")."""
    if not getattr(bn, "_stsmooth_collect", False) or bn.running_mean is None:
        return
    x = inputs[0]
    dims = [0] + list(range(2, x.dim()))
    n = x.numel() // x.shape[1]
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False) * (n / max(n - 1, 1))  # running_var is unbiased in PyTorch's BN
    alpha = bn.momentum if bn.momentum is not None else 0.1
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), alpha)
    bn.running_var.lerp_(var.to(bn.running_var.dtype), alpha)
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)


def install_own_statistics(module: nn.Module) -> list:
    """Hook every BN of ``module`` for the ``own`` mode; returns the hook handles."""
    return [bn.register_forward_hook(_own_statistics_hook) for bn in batchnorms(module)]


def collect_statistics(module: nn.Module, on: bool) -> None:
    """Switch the ``own`` mode's statistic collection on (teacher training forwards) or off (evaluation)."""
    for bn in batchnorms(module):
        bn._stsmooth_collect = on


@torch.no_grad()
def shuffle_bn_forward(model: Callable[[Tensor], Tensor], x: Tensor, groups: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Forward ``x`` with MoCo's ShuffleBN (paper 003 §4 and Table 1 "ShuffleBN").

    The global batch (every rank's ``x`` under torchrun, ``x`` alone in one process) is
    permuted and cut into ``groups`` sub-batches whose BN statistics are computed
    separately (train-mode BN); the outputs are un-permuted, so a sample's key is
    normalised with statistics of other images than its query's companions. Under
    torchrun each rank forwards its share of the sub-batches, so one rank's keys depend
    on the other ranks' images, as in facebookresearch/moco ``moco/builder.py``
    (``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp``: gather, one permutation from
    rank 0, forward, gather back, un-permute).

    Args:
        model: the (teacher) network, BN in train mode, the same on every rank (a rank's
            samples are forwarded by other ranks' copies).
        x: this rank's input batch (B, ...); every rank must have the same B.
        groups: sub-batches of the global batch of W*B samples (W ranks): a multiple of
            W, with B divisible by groups/W. Default: W under torchrun (one sub-batch per
            rank, as MoCo), 2 in one process.
        generator: source of the permutation; under torchrun rank 0's draw is used.

    Returns:
        Outputs (B, ...) of this rank's samples, in their original order. Keys carry no
        gradient (MoCo: "no gradient to keys"; the gathers are not differentiable).
    """
    world = distributed.world_size() if distributed.is_distributed() else 1
    rank = distributed.rank() if world > 1 else 0
    groups = (world if world > 1 else 2) if groups is None else groups
    b = x.shape[0]
    if groups < 1 or groups % world or b % (groups // world):
        raise ValueError(
            f"ShuffleBN groups={groups} must be a positive multiple of the world size {world} "
            f"whose share groups/{world} divides the batch size {b}"
        )
    # Every rank draws (rank 0's draw wins), so all ranks' random streams advance alike.
    perm = torch.randperm(world * b, generator=generator, device="cpu").to(x.device)
    if world > 1:
        sizes = distributed.all_gather_concat(torch.tensor([b], device=x.device))
        if bool((sizes != b).any()):
            raise ValueError(f"ShuffleBN needs the same batch size on every rank, got {sizes.tolist()}")
        x = distributed.all_gather_concat(x)
        distributed.broadcast_([perm])
    mine = perm.view(world, b)[rank]
    out = torch.cat([model(chunk) for chunk in x[mine].chunk(groups // world)])
    out = distributed.all_gather_concat(out)  # row j is the output of global sample perm[j]
    inverse = torch.argsort(perm)
    return out[inverse[rank * b : (rank + 1) * b]]


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """SyncBN for the student under DDP (BYOL's normalisation, paper 003 Table 1)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


__all__ = [
    "BN_MODES",
    "NORMS",
    "BNMode",
    "NormalisesWith",
    "StatisticsFrom",
    "batchnorms",
    "check_norm",
    "collect_statistics",
    "convert_sync_batchnorm",
    "install_own_statistics",
    "set_teacher_mode",
    "shuffle_bn_forward",
]
