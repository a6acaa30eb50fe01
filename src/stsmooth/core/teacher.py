"""The teacher: a smoothed copy of the student, updated by one call per step.

Usage::

    teacher = Teacher(student, momentum=0.99, preserve_prob=0.7, granularity="layer", norm="eman")
    for x in data:
        loss = criterion(student(x), teacher(x))        # teacher forward has no autograd
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        teacher.update(student)                          # paper 000 Eq. 3, paper 003 Eq. 9

The rule is :func:`stsmooth.core.smoothing.smooth_`; what the teacher's BatchNorm does is
in :mod:`stsmooth.core.norm`. Under torchrun the seed is agreed once at construction and
each step's draws are a function of (seed, step), so every rank draws the same units
with no communication per step, and a resumed run draws exactly what an
uninterrupted one would.

A student sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``) gets a teacher
sharded the same way (:func:`stsmooth.core.distributed.sharded_copy`), updated on the
local shards only: every unit's draw is a pure function of (seed, step, global unit
index) (:mod:`stsmooth.core.draws`), so a rank holding rows 512-1023 of a tensor draws
exactly those rows' units, with no all-gather. Its ``state_dict`` holds DTensors, for
``torch.distributed.checkpoint`` (each rank writes its shard).
"""

from __future__ import annotations

import copy
import os
import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from stsmooth.core import distributed, draws
from stsmooth.core import norm as norms
from stsmooth.core.fast import DrawPlan, check_kernel, copy_all, lerp_by_rate
from stsmooth.core.smoothing import (
    check_granularity,
    check_probability,
    module_tensors,
    smooth_,
)

_NONFINITE = ("raise", "skip", "ignore")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers (an FSDP2 module is its own)."""
    if distributed.is_fsdp1(module):
        raise ValueError("student is wrapped with FSDP1 (torch.distributed.fsdp.FullyShardedDataParallel), which is "
                         "not supported; the supported form is FSDP2: torch.distributed.fsdp.fully_shard(student)")
    while True:
        if hasattr(module, "_orig_mod"):  # torch.compile
            module = module._orig_mod
        elif isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        else:
            return module


def _describe(t: Tensor) -> str:
    if distributed.is_dtensor(t):
        local, offset = distributed.local_shard(t)
        return f"a DTensor with placements {tuple(t.placements)}, local shape {tuple(local.shape)} at offset {offset}"
    return f"a plain tensor of shape {tuple(t.shape)}"


def _flat_index(shape: torch.Size, offset: tuple[int, ...], local: torch.Size, device: torch.device) -> Tensor:
    """Row-major flat indices, in the full tensor of ``shape``, of a block ``local`` starting at ``offset``."""
    index = torch.zeros((), dtype=torch.int64, device=device)
    stride = 1
    for d in reversed(range(len(shape))):
        along = torch.arange(offset[d], offset[d] + local[d], device=device) * stride
        index = index + along.view((-1,) + (1,) * (len(shape) - 1 - d))
        stride *= shape[d]
    return index


class Teacher:
    """A smoothed copy of a student network (TMA, SE, STS; EMAN statistics).

    Args:
        student: the student network; DDP-wrapped or ``torch.compile``d is fine.
        momentum: TMA momentum m in [0, 1] (BYOL 0.99 -> 1 cosine, MoCo 0.999, EMAN-BYOL 0.98).
        preserve_prob: preserving probability p in [0, 1] (paper 000: 0.7 BYOL, 0.5 MoCo and
            FixMatch); 0 is TMA, and with ``momentum=0`` SE.
        granularity: unit of the draws: ``"tensor"``, ``"layer"`` (paper 000's default),
            ``"channel"`` or ``"neuron"``.
        norm: the teacher's BatchNorm (table in :mod:`stsmooth.core.norm`): ``"eman"`` (default),
            ``"batch"``, ``"copy"`` or ``"own"``.
        seed: seed of the draws; ``None`` picks one. Under torchrun rank 0's is used by all.
        nonfinite: what a non-finite student value does: ``"raise"`` (teacher unchanged),
            ``"skip"`` (teacher unchanged, a warning) or ``"ignore"`` (no check, fastest).
        kernel: ``"auto"`` runs channel/neuron updates of float32 CUDA teachers through the
            fused Triton kernel when Triton is installed (:mod:`stsmooth.core.triton_kernel`);
            ``"torch"`` turns it off. Both give the same numbers.

    Attributes:
        module: the smoothed ``nn.Module`` (no gradients).
        bn_mode: the row of :data:`stsmooth.core.norm.BN_MODES` that ``norm`` names.
        step: number of updates applied.
    """

    def __init__(
        self,
        student: nn.Module,
        momentum: float = 0.99,
        preserve_prob: float = 0.0,
        granularity: str = "layer",
        norm: str = "eman",
        seed: int | None = None,
        nonfinite: str = "raise",
        kernel: str = "auto",
    ) -> None:
        self.momentum = check_probability("momentum", momentum)
        self.preserve_prob = check_probability("preserve_prob", preserve_prob)
        self.granularity = check_granularity(granularity)
        self.norm = norms.check_norm(norm)
        self.bn_mode = norms.BN_MODES[self.norm]
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite={nonfinite!r} is not one of {', '.join(_NONFINITE)}")
        self.nonfinite = nonfinite
        self.kernel = check_kernel(kernel)
        if seed is None:
            seed = int.from_bytes(os.urandom(7), "little")
        self.seed = distributed.broadcast_int(int(seed))
        self.step = 0

        student = unwrap(student)
        self.sharded = distributed.is_sharded(student)
        if self.sharded:
            # FSDP2 refuses deepcopy; a rank's shards are its own (no broadcast), its buffers are not
            self.module = distributed.sharded_copy(student)
            tensors = list(self.module.buffers())
        else:
            self.module = copy.deepcopy(student)
            tensors = list(self.module.parameters()) + list(self.module.buffers())
        self.module.requires_grad_(False)
        # A student that trained under DDP has rank-local BN statistics, and one not yet
        # wrapped by DDP may have rank-local weights: every rank starts from rank 0's teacher
        # (as DDP does for the student), and the updates keep them identical from there.
        distributed.broadcast_(tensors)
        norms.set_teacher_mode(self.module, self.norm)
        if self.bn_mode.folds_in_after_use:
            norms.install_own_statistics(self.module)
            norms.collect_statistics(self.module, False)
        self._plan()
        self._student_ref: Any = None
        self._student_tensors: list[Tensor] = []
        self._student_copied: list[Tensor] = []

    def _plan(self) -> None:
        mode = self.bn_mode
        smooth_stats = mode.smooths_statistics
        self._names, self._tensors, self._units, other = module_tensors(self.module, statistics=smooth_stats)
        # What is copied rather than smoothed: non-floating buffers (num_batches_tracked) with
        # eman and copy; batch/own keep the teacher's own.
        copied = other if mode.copies_from_student else []
        buffers = dict(self.module.named_buffers())
        self._copied_names = [n for n in copied if n in buffers]
        self._copied = [buffers[n] for n in self._copied_names]
        self._buffer_index = [i for i, n in enumerate(self._names) if n in buffers]
        # copy: the statistics move with m=0 under their layer's draws (003 Table 8 "student PN")
        self._copy_index = self._buffer_index if mode.copies_statistics else []
        # batch/own: the teacher collects statistics from its own (rank-local) batches
        own = mode.statistics_from is norms.StatisticsFrom.OWN_BATCHES
        self._own_stats = [b for b in buffers.values() if b.is_floating_point()] if own else []

    def _resolve(self, student: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """The student's tensors in the teacher's order; checked once per student object (as given, wrapper and all)."""
        given = student
        if self._student_ref is not None and self._student_ref() is given and not self.sharded:
            # before unwrap: its FSDP1 check walks every module, a cost per update on a GPU
            return self._student_tensors, self._student_copied
        student = unwrap(student)
        if self.sharded:
            # FSDP2 swaps a module's DTensors for full tensors during a forward, and a no-grad
            # forward leaves the root that way; the update reads the shards, looked up anew each time
            for _, mod in distributed.fsdp_modules(student):
                mod.reshard()
        params = dict(student.named_parameters(remove_duplicate=False))
        buffers = dict(student.named_buffers(remove_duplicate=False))
        found = []
        for name, t in zip(self._names + self._copied_names, self._teacher_tensors()):
            s = params.get(name, buffers.get(name))
            if s is None:
                raise ValueError(f"student has no tensor {name!r} that the teacher has (shape {tuple(t.shape)})")
            if s.shape != t.shape:
                raise ValueError(
                    f"student tensor {name!r} has shape {tuple(s.shape)} but the teacher's is {tuple(t.shape)}"
                )
            if distributed.layout(s) != distributed.layout(t):
                raise ValueError(f"student tensor {name!r} is {_describe(s)} but the teacher's is {_describe(t)}; "
                                 f"shard the student as the teacher (the same fully_shard calls and mesh)")
            found.append(distributed.local_shard(s)[0] if self.sharded else s)
        extra = (set(params) | set(buffers)) - set(self._names) - set(self._copied_names)
        extra -= {n for n, _ in self.module.named_buffers()} | {n for n, _ in self.module.named_parameters()}
        if extra:
            raise ValueError(f"student tensor {sorted(extra)[0]!r} has no counterpart in the teacher")
        n = len(self._names)
        if self.sharded:
            return found[:n], found[n:]
        self._student_ref = weakref.ref(given)
        self._student_tensors, self._student_copied = found[:n], found[n:]
        return self._student_tensors, self._student_copied

    def _teacher_tensors(self) -> list[Tensor]:
        """The teacher's smoothed then copied tensors; for a sharded teacher the module's current ones by name."""
        if not self.sharded:
            return self._tensors + self._copied
        named = dict(self.module.named_parameters())
        named.update(self.module.named_buffers())
        return [named[n] for n in self._names + self._copied_names]

    def _update_shards(self, source: list[Tensor], copied: list[Tensor], m: float, p: float) -> None:
        """Eq. 3 on this rank's shards (FSDP2): each unit's draw from its global index, no communication.

        The units and their indices are those of the unsharded teacher (:mod:`stsmooth.core.draws`'
        table: tensor id, group id, global row, global flat index), so the gathered teacher
        equals an unsharded one fed the same students, bit for bit.
        """
        if p == 1.0:  # the teacher is unchanged, counters included
            return
        tensors = self._teacher_tensors()
        n = len(self._names)
        local = [distributed.local_shard(t) for t in tensors[:n]]
        targets = [t for t, _ in local]
        rates = [1.0 - m] * n
        for i in self._copy_index:
            rates[i] = 1.0
        plan = self._draw_plan()
        if p == 0.0:
            moved = list(range(n))
        elif self.granularity in ("tensor", "layer"):
            ids = [u.source if self.granularity == "tensor" else u.group for u in plan.units]
            flags = draws.moves(self.seed, self.step, draws.STREAM_SHARED, torch.tensor(ids), p).tolist()
            moved = [i for i, f in enumerate(flags) if f]
        else:
            moved = []
            for i, ((t, offset), s) in enumerate(zip(local, source)):
                if t.numel() == 0:
                    continue
                full = self._tensors[i].shape
                if self.granularity == "channel":
                    first = offset[0] if len(full) else 0
                    rows = torch.arange(first, first + (t.shape[0] if len(full) else 1), device=t.device)
                    move = draws.moves(self.seed, self.step, draws.STREAM_SHARED, plan.row_at[i] + rows, p)
                    move = move.view((t.shape[0],) + (1,) * (t.dim() - 1) if len(full) else ())
                else:
                    stream = draws.neuron_stream(plan.units[i].source)
                    move = draws.moves(self.seed, self.step, stream, _flat_index(full, offset, t.shape, t.device), p)
                t.copy_(torch.where(move, torch.lerp(t, s.to(t.dtype), rates[i]), t))
        lerp_by_rate(targets, source, moved, rates)
        for t, s in zip(tensors[n:], copied):
            t.copy_(s)

    def _finite(self, tensors: list[Tensor]) -> bool:
        """Whether every entry of ``tensors`` is finite, in one vectorised pass over memory.

        A 2-norm is non-finite when some entry is, and a max-abs norm is not vectorised on
        CPU (10x slower); the 2-norm can also overflow on huge finite entries, so tensors
        whose norm is not finite get the exact ``isfinite`` check.
        """
        if not tensors:
            return True
        norms_ = torch._foreach_norm(tensors, 2)
        if bool(torch.stack([n.float() for n in norms_]).isfinite().all()):
            return True
        return all(bool(torch.isfinite(t).all()) for t, n in zip(tensors, norms_) if not bool(n.isfinite()))

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float | None = None, preserve_prob: float | None = None) -> None:
        """One smoothing step from ``student`` (paper 000 Eq. 3; EMAN Eq. 9 for statistics).

        Args:
            student: the student network (same architecture; DDP/compiled wrappers allowed).
            momentum: this step's m, e.g. from a schedule; default the constructor's.
            preserve_prob: this step's p; default the constructor's.

        Raises:
            ValueError: m or p outside [0, 1], a student that does not match the teacher,
                or (``nonfinite="raise"``) a non-finite student value; the teacher is unchanged.
        """
        m = self.momentum if momentum is None else check_probability("momentum", momentum)
        p = self.preserve_prob if preserve_prob is None else check_probability("preserve_prob", preserve_prob)
        source, copied = self._resolve(student)
        if self.nonfinite != "ignore" and p < 1.0:
            # One verdict for all ranks (rank-local BN statistics can be non-finite on one
            # rank only): a rank that raised or skipped alone would leave the others waiting
            # in the all-reduce below, and the ranks' step counters, hence draws, would part.
            finite = self._finite(source)
            bad_rank = distributed.max_int(0 if finite else distributed.rank() + 1) - 1
            if bad_rank >= 0:
                if finite:
                    msg = f"rank {bad_rank}'s student has non-finite values"
                else:
                    bad = next(n for n, s in zip(self._names, source) if not bool(torch.isfinite(s).all()))
                    msg = f"student tensor {bad!r} has non-finite values"
                msg += f"; teacher left unchanged at step {self.step}"
                if self.nonfinite == "raise":
                    raise ValueError(msg)
                warnings.warn(msg + " (update skipped)", RuntimeWarning, stacklevel=2)
                return
        if distributed.is_distributed():
            source, copied = self._reconciled(source, copied)
            # batch/own teachers saw only their rank's batches: agree on their statistics too
            distributed.average_(self._own_stats)
        if self.sharded:
            self._update_shards(source, copied, m, p)
            self.step += 1
            return
        momenta: float | list[float] = m
        if self._copy_index:
            momenta = [m] * len(self._tensors)
            for i in self._copy_index:
                momenta[i] = 0.0
        smooth_(self._tensors, source, momenta, p, self.granularity, self.seed, self.step, plan=self._draw_plan(),
                kernel=self.kernel)
        if p < 1.0:  # p = 1 leaves the teacher unchanged, counters included
            copy_all(self._copied, copied)
        self.step += 1

    def _draw_plan(self) -> DrawPlan:
        """The draw bookkeeping of the current tensor list, rebuilt when ``_plan`` replaced it."""
        plan = getattr(self, "_draws", None)
        if plan is None or plan.units is not self._units:
            plan = self._draws = DrawPlan([t.shape for t in self._tensors], self._units)
        return plan

    def _reconciled(self, source: list[Tensor], copied: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Rank-averaged copies of the student's running statistics.

        Each rank's forward moved its student's statistics with its own batch; DDP only
        re-broadcasts rank 0's at the next forward, so smoothing from local statistics
        would let EMAN teachers drift apart. One small all-reduce keeps them identical.
        """
        source = list(source)
        stats = [source[i].clone() for i in self._buffer_index]
        floats = [i for i, s in enumerate(copied) if s.is_floating_point()]
        copies = [copied[i].clone() for i in floats]
        distributed.average_(stats + copies)
        for i, s in zip(self._buffer_index, stats):
            source[i] = s
        copied = list(copied)
        for i, s in zip(floats, copies):
            copied[i] = s
        return source, copied

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward through the smoothed copy without autograd."""
        with torch.no_grad():
            if self.bn_mode.folds_in_after_use and self.module.training:
                norms.collect_statistics(self.module, True)
                try:
                    return self.module(*args, **kwargs)
                finally:
                    norms.collect_statistics(self.module, False)
            return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "Teacher":
        """Training mode (dropout on), BN as ``norm`` asks; ``train(False)`` is full eval mode."""
        self.module.train(mode)
        if mode:
            norms.set_teacher_mode(self.module, self.norm)
        return self

    def eval(self) -> "Teacher":
        return self.train(False)

    def to(self, *args: Any, **kwargs: Any) -> "Teacher":
        self.module.to(*args, **kwargs)
        self._plan()
        self._student_ref = None
        return self

    def state_dict(self) -> dict[str, Any]:
        """Teacher weights and the step counter and seed that fix all future draws.

        A sharded (FSDP2) teacher's weights are DTensors: save them with
        ``torch.distributed.checkpoint`` (each rank writes its shard), or gather them with
        :func:`stsmooth.core.distributed.full_state_dict` for one file.
        """
        return {
            "module": self.module.state_dict(),
            "step": self.step,
            "seed": self.seed,
            "momentum": self.momentum,
            "preserve_prob": self.preserve_prob,
            "granularity": self.granularity,
            "norm": self.norm,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; the run continues with the same draws."""
        for key in ("granularity", "norm"):
            if state.get(key, getattr(self, key)) != getattr(self, key):
                raise ValueError(f"checkpoint has {key}={state[key]!r} but this teacher has {getattr(self, key)!r}")
        module_state = state["module"]
        if self.sharded:  # a gathered (full) state loads too: each rank takes its rows
            module_state = distributed.shard_like(self.module.state_dict(), module_state)
        self.module.load_state_dict(module_state)
        self.step = int(state["step"])
        self.seed = int(state["seed"])

    def __repr__(self) -> str:
        return (
            f"Teacher(momentum={self.momentum}, preserve_prob={self.preserve_prob}, "
            f"granularity={self.granularity!r}, norm={self.norm!r}, step={self.step})"
        )
