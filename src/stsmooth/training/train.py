"""The training loop: one plain step function and the epochs around it.

One step (:func:`train_step`, DESIGN.md "One training step")::

    loss, logs = model(batch, teacher, step)        # model.loss: augment, student, teacher (no grad)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    teacher.update(model.student, momentum=m_k, preserve_prob=p_k)

m_k, p_k and the learning rate are pure functions of the global step k, the
data order is a pure function of (seed, epoch) and the global random state is
re-seeded from (seed, rank, epoch) at every epoch start, so a run resumed from
``checkpoints/last.pt`` continues bit-identically on CPU.

Around it (:func:`run`): the run folder, a progress bar, evaluation every few
epochs (:mod:`stsmooth.training.monitor`), a checkpoint every epoch, and at the end
``results.json``, training curves and the teacher's backbone as safetensors
(000 §4.1: "we dump the teacher model at the end of training").
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stsmooth.core import distributed as dist
from stsmooth.core import schedules
from stsmooth.core.teacher import Teacher
from stsmooth.errors import StsmoothError
from stsmooth.methods import METHODS
from stsmooth.methods.contract import Method, MethodModel
from stsmooth.models.export import save_safetensors, torchvision_state_dict
from stsmooth.training import checkpoint as ckpt
from stsmooth.training import config as config_mod
from stsmooth.training import curves, optim, parallel, run_data
from stsmooth.training.builder import build_model, resolve_device, seed_everything
from stsmooth.training.config import RunConfig, TeacherConfig
from stsmooth.training.feeding import SelfSupervisedFeed, SemiSupervisedFeed
from stsmooth.training.monitor import Monitor
from stsmooth.training.progress import Progress, as_float
from stsmooth.training.run_folder import RunFolder


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before saving anything from that epoch."""


#: exit status of a run stopped by SIGTERM/SIGINT after writing its checkpoint: sysexits.h's
#: EX_TEMPFAIL ("temporary failure; the user is invited to retry"). Not 143 (128 + SIGTERM), which
#: is also what a process killed by SIGTERM *without* a checkpoint reports.
PREEMPTED_EXIT = 75


class Preempted(SystemExit):
    """SIGTERM or SIGINT stopped the run after a step; its checkpoint is written (exit status 75).

    A ``SystemExit``: wherever :func:`run` is called from (``stsmooth train``,
    a script, torchrun), the process ends with status :data:`PREEMPTED_EXIT`
    and no traceback, so a requeue script can tell it from a failure.
    """

    def __init__(self, message: str):
        super().__init__(PREEMPTED_EXIT)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _StopSignals:
    """Within ``with``: SIGTERM / SIGINT set :attr:`received`, read by the loop after each step.

    A second SIGINT (Ctrl-C twice) interrupts at once. Handlers can only be set
    in the main thread; elsewhere (a run in a worker thread) signals keep their
    default action.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def random_state_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of the global random state in ``epoch`` on ``rank`` (augmentations, ShuffleBN).

    Not the data order's seed (:func:`stsmooth.data.loader.order_seed`), which every rank shares.
    """
    return int(np.random.SeedSequence([seed, rank, epoch, 0x5751]).generate_state(1, np.uint32)[0])


def teacher_schedules(tcfg: TeacherConfig, steps_per_epoch: int, total_steps: int):
    """(m_k, p_k) schedules of the global step from a ``TeacherConfig``."""
    momentum = schedules.build(tcfg.momentum_schedule, tcfg.momentum, total_steps, final=tcfg.momentum_final,
                               switch_step=round(tcfg.momentum_switch_epochs * steps_per_epoch),
                               key="teacher.momentum")
    preserve = schedules.build(tcfg.preserve_schedule, tcfg.preserve_prob, total_steps, final=tcfg.preserve_final,
                               key="teacher.preserve_prob")
    return momentum, preserve


def train_step(model: MethodModel, teacher: Teacher, optimizer: torch.optim.Optimizer, batch: dict, step: int,
               momentum: float, preserve_prob: float, *, wrapped: nn.Module | None = None,
               autocast: torch.dtype | None = None, grad_clip: float = 0.0) -> tuple[torch.Tensor, dict]:
    """One optimisation step and one teacher update.

    Args:
        model: the method's model (``model.student``, ``model.loss``).
        teacher: the smoothed teacher of ``model.student``.
        optimizer: over ``model.parameters()``; its learning rate is already set.
        batch: the method's batch dict (uint8 images on the device).
        step: global step k (0-based) before this update.
        momentum, preserve_prob: m_k and p_k of Eq. 3 (000) for this update.
        wrapped: ``model`` wrapped for training (DDP, :func:`stsmooth.training.parallel.wrap`); None: ``model``.
        autocast: dtype for ``torch.autocast`` (bf16 on CUDA) or None.
        grad_clip: max gradient norm, 0 = off.

    Returns:
        (loss, logs): the detached loss and the method's logs.
    """
    device_type = next(model.parameters()).device.type
    amp = torch.autocast(device_type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with amp:
        loss, logs = (model if wrapped is None else wrapped)(batch, teacher, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    teacher.update(model.student, momentum=momentum, preserve_prob=preserve_prob)
    return loss.detach(), logs


@dataclass
class Session:
    """Everything a run is made of, built by :func:`setup`."""

    cfg: RunConfig
    method: Method
    device: torch.device
    model: MethodModel
    teacher: Teacher
    augment: dict
    optimizer: torch.optim.Optimizer
    feed: SelfSupervisedFeed | SemiSupervisedFeed
    monitor: Monitor
    wrapped: nn.Module  # what a step calls: the model, or DDP around it
    folder: RunFolder
    data: run_data.RunData
    steps_per_epoch: int
    total_steps: int
    resume: dict | None = None  # the checkpoint a resumed run continues (checked against cfg), else None


#: keys a resume may change: they steer evaluation, logging, checkpoints and where files are, not the
#: training (prefixes end in "."); any other difference is refused (see :func:`check_resume`)
RESUME_ALLOWED = ("eval.", "checkpoint.", "dist.", "log", "log_project", "progress", "export", "out", "resume",
                  "device", "compile", "amp", "data.root", "data.download", "data.num_workers",
                  "data.skip_bad_images", "parallel", "optim.epochs")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _launch_world_size() -> int:
    # before the process group exists, torchrun's environment already says it
    return int(os.environ.get("WORLD_SIZE", "1")) if dist.launched_by_torchrun() else dist.world_size()


def check_resume(cfg: RunConfig, state: dict, where: str = "the checkpoint") -> list[str]:
    """Compares a checkpoint's config with the config resuming it.

    Args:
        cfg: the new run's config.
        state: the loaded checkpoint (its ``config``, ``world_size``).
        where: the checkpoint's path, for messages.

    Returns:
        The allowed changes, e.g. ``["eval.every_epochs 2 -> 5", "world size 2 -> 1"]``.

    Raises:
        ValueError: one line naming the first refused key and both values (method, model, data set,
            batch size, seed, optimiser and schedule, teacher rule, the method's section).
    """
    stored = state.get("config", {})
    try:
        stored = config_mod.to_dict(config_mod.from_dict(stored))  # fills keys newer than the checkpoint
    except ValueError:
        pass  # a key this version no longer has: compare what both name
    old, new = _flat(stored), _flat(config_mod.to_dict(cfg))
    allowed = []
    for key in sorted(set(old) | set(new)):  # a key on one side only: a dict entry (model.options.width)
        if old.get(key, "unset") == new.get(key, "unset"):
            continue
        section = key.split(".", 1)[0]
        if section in METHODS and section != cfg.method and section != old.get("method"):
            continue  # another method's section is not read
        if any(key == a or (a.endswith(".") and key.startswith(a)) for a in RESUME_ALLOWED):
            if key not in ("out", "resume"):
                allowed.append(f"{key} {old.get(key, 'unset')!r} -> {new.get(key, 'unset')!r}")
            continue
        raise ValueError(f"resume refused: {key} is {old.get(key, 'unset')!r} in {where} but "
                         f"{new.get(key, 'unset')!r} now; a different "
                         f"{key} breaks the run or its schedules (set it back, or start a new out=)")
    world = state.get("world_size")
    if world is not None and int(world) != _launch_world_size():
        allowed.append(f"world size {int(world)} -> {_launch_world_size()} (same global batch)")
    return allowed


def _read_resume(cfg: RunConfig) -> dict | None:
    """The checkpoint ``resume=true`` continues (checked against ``cfg``), or None: one line says so."""
    path = Path(cfg.out) / "checkpoints" / "last.pt"
    if not cfg.resume:
        return None
    if not path.is_file():
        if dist.is_main() and int(os.environ.get("RANK", "0")) == 0:
            print(f"stsmooth: resume=true but there is no checkpoint at {path}; starting afresh", file=sys.stderr)
        return None
    state = ckpt.load(path, map_location="cpu")
    state["allowed_changes"] = check_resume(cfg, state, str(path))
    return state


def _finished_results(cfg: RunConfig, state: dict | None) -> dict | None:
    """``results.json`` of a run whose checkpoint is its last step and whose end-of-run work is done."""
    if state is None or "steps_per_epoch" not in state:
        return None
    results = Path(cfg.out) / "results.json"
    if int(state["step"]) < int(state["steps_per_epoch"]) * cfg.optim.epochs or not results.is_file():
        return None
    try:
        return json.loads(results.read_text())
    except ValueError:
        return None  # torn by a kill: the end-of-run work is done again


def setup(cfg: RunConfig, resume: dict | None = None) -> Session:
    """Initialises DDP (under torchrun), takes the run folder, reads the data and builds model, teacher, optimiser.

    Args:
        cfg: the run's config.
        resume: the checkpoint to continue (already checked by :func:`check_resume`), or None.

    Raises:
        ValueError: the batch does not split over the ranks, or the resumed checkpoint has another
            number of steps per epoch (the schedules would no longer match).
        StsmoothError: the run folder is in use by another process (its lock).
    """
    torchrun = dist.launched_by_torchrun()
    device = dist.init_from_env(timeout_minutes=cfg.dist.timeout_minutes) if torchrun else resolve_device(cfg.device)
    if dist.launched_by_torchrun() and cfg.device not in ("auto", str(device), device.type):
        raise ValueError(f"under torchrun each rank uses {device}; leave device=auto (got device={cfg.device!r})")
    method = METHODS[cfg.method]
    world, rank = dist.world_size(), dist.rank()
    if cfg.optim.batch_size % world:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the {world} ranks")
    folder = RunFolder(cfg.out, active=dist.is_main())
    try:
        data = run_data.load(cfg, method.kind.labeled_subset, folder.root if folder.active else None)
        model, teacher, augment = build_model(cfg, method, data.meta, device)
        if cfg.parallel == "fsdp" and dist.is_distributed():  # before the optimiser: FSDP2 replaces the parameters
            teacher = parallel.shard(model, teacher)
        optimizer = optim.build(cfg.optim, model)
        wrapped = parallel.wrap(model, device, compile=cfg.compile)
        local_batch = cfg.optim.batch_size // world
        workers = cfg.data.num_workers
        if method.kind.labeled_subset:
            feed = SemiSupervisedFeed(data.labeled, data.unlabeled, local_batch,
                                      int(config_mod.method_config(cfg).mu), cfg.seed, device, rank, world,
                                      cfg.optim.steps_per_epoch, workers)
        else:
            feed = SelfSupervisedFeed(data.train, local_batch, cfg.seed, device, rank, world,
                                      cfg.optim.steps_per_epoch, workers)
        monitor = Monitor(method.kind, data.bank, data.test, augment["eval"], device, cfg.eval,
                          data.meta["num_classes"], seed=cfg.seed)
        steps = feed.steps_per_epoch
        stored_steps = (resume or {}).get("steps_per_epoch")
        if stored_steps is not None and int(stored_steps) != steps:
            raise ValueError(f"resume refused: steps per epoch is {int(stored_steps)} in {folder.checkpoint} but "
                             f"{steps} now (data set size or optim.steps_per_epoch); the schedules would not match")
    except BaseException:
        folder.release()
        raise
    return Session(cfg, method, device, model, teacher, augment, optimizer, feed, monitor, wrapped, folder, data,
                   steps, steps * cfg.optim.epochs, resume)


def training_state(s: Session, step: int, epoch: int) -> dict:
    """The checkpoint dict of a session after ``epoch`` epochs / ``step`` steps (every rank calls it)."""
    state = ckpt.state(model=s.model, optimizer=s.optimizer, teacher=s.teacher, step=step, epoch=epoch,
                       config=config_mod.to_dict(s.cfg), meta=s.data.meta, monitor=s.monitor.state_dict(),
                       steps_per_epoch=s.steps_per_epoch, world_size=dist.world_size())
    if s.teacher.sharded:  # parallel=fsdp: one file of gathered tensors
        state.update(parallel.full_states(s.model, s.optimizer, s.teacher))
    return state


def restore(s: Session, state: dict) -> tuple[int, int]:
    """Loads a checkpoint dict into the session; returns (step, epoch).

    A checkpoint written inside an epoch carries every rank's random state
    (``rng_ranks``); each rank takes its own, so the rest of the epoch draws
    what it would have drawn without the interruption.
    """
    if s.teacher.sharded:
        parallel.load_full_states(s.model, s.optimizer, s.teacher, state)
    else:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.teacher.load_state_dict(state["teacher"])
    s.monitor.load_state_dict(state.get("monitor", {}))
    step, epoch = int(state["step"]), int(state["epoch"])
    ranks = state.get("rng_ranks")
    if ranks is not None and len(ranks) == dist.world_size():
        ckpt.set_rng_state(ranks[dist.rank()])
    elif ranks is not None:  # another world size inside an epoch: fresh per-rank streams for its rest
        ckpt.set_rng_state(state["rng"])
        seed_everything(random_state_seed(s.cfg.seed, dist.rank(), epoch) ^ step)
    else:
        ckpt.set_rng_state(state["rng"])
    return step, epoch


def _mean_logs(sums: dict, count: int) -> dict:
    return {k: as_float(v) / max(count, 1) for k, v in sums.items()}


def _eval_due(cfg: RunConfig, epoch_done: int) -> bool:
    every = cfg.eval.every_epochs
    return epoch_done == cfg.optim.epochs or (every > 0 and epoch_done % every == 0)


def _teacher_disagreement(teacher: Teacher) -> float:
    """Max |teacher_r - teacher_0| over parameters and buffers, across ranks (0 in one process)."""
    if not dist.is_distributed():
        return 0.0
    import torch.distributed as tdist

    flat = torch.cat([t.detach().float().reshape(-1) for t in dist.full_state_dict(teacher.module).values()
                      if t.is_floating_point()])
    reference = flat.clone()
    tdist.broadcast(reference, 0)
    diff = (flat - reference).abs().max()
    tdist.all_reduce(diff, op=tdist.ReduceOp.MAX)
    return float(diff)


class _Saver:
    """Writes ``last.pt`` at epoch ends, every ``checkpoint.every_steps`` / ``every_minutes``, and on a stop signal."""

    def __init__(self, s: Session, start_time: float, elapsed_before: float, last_step: int):
        self.s, self.start_time, self.elapsed_before = s, start_time, elapsed_before
        self.last_step = last_step  # step of the checkpoint now on disk (names it when checkpoint.keep > 1)
        self.last_time = time.monotonic()

    def due(self, step: int, stop: bool) -> tuple[bool, bool]:
        """(save now, stop now) after ``step`` steps; the ranks agree (one tiny all-reduce under DDP)."""
        c = self.s.cfg.checkpoint
        timed = c.every_minutes > 0 and time.monotonic() - self.last_time >= 60 * c.every_minutes
        flag = dist.max_int(2 if stop else int(timed)) if dist.is_distributed() else (2 if stop else int(timed))
        stepped = c.every_steps > 0 and step % c.every_steps == 0
        return flag > 0 or stepped, flag == 2

    def save(self, step: int, epoch: int, extra: dict) -> None:
        s = self.s
        state = training_state(s, step, epoch)
        state.update(extra)
        if step % s.steps_per_epoch and dist.is_distributed():
            import torch.distributed as tdist

            ranks = [None] * dist.world_size()
            tdist.all_gather_object(ranks, ckpt.rng_state())
            state["rng_ranks"] = ranks
        elif step % s.steps_per_epoch:
            state["rng_ranks"] = [state["rng"]]
        if s.folder.active:
            state["seconds"] = self.elapsed_before + time.perf_counter() - self.start_time
            if self.last_step != step:  # not again when the epoch's end is re-saved after its evaluation
                ckpt.keep_previous(s.folder.checkpoint, self.last_step, s.cfg.checkpoint.keep)
            ckpt.save(state, s.folder.checkpoint)
        self.last_step, self.last_time = step, time.monotonic()


def run(cfg: RunConfig) -> dict:
    """Trains as ``cfg`` says and returns ``results.json``'s content.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last checkpoint is the last good epoch).
        Preempted: SIGTERM/SIGINT arrived; the checkpoint of the last finished step is written
            (exit status :data:`PREEMPTED_EXIT`; ``resume=true`` continues from it).
        ValueError: ``resume=true`` with a config that differs in a key that breaks the run.
    """
    start_time = time.perf_counter()
    state = _read_resume(cfg)  # before anything in the folder is written
    done = _finished_results(cfg, state)
    if done is not None:
        if dist.is_main() and int(os.environ.get("RANK", "0")) == 0:
            print(f"stsmooth: {cfg.out} is finished (step {state['step']}, results.json); nothing to do",
                  file=sys.stderr)
        return done
    s = setup(cfg, state)
    folder, model, teacher = s.folder, s.model, s.teacher
    try:
        folder.save_config(cfg)
        step = epoch = 0
        resumed = None
        evals: dict = {}  # what results.json reports ("init", "last" of epoch "last_epoch"), kept in the checkpoint
        sums: dict = {}
        count = 0
        if state is not None:
            step, epoch = restore(s, state)
            resumed = step
            elapsed_before = float(state.get("seconds", 0.0))
            evals = dict(state.get("evals", {}))
            partial = state.get("epoch_logs", {})
            sums, count = dict(partial.get("sums", {})), int(partial.get("count", 0))
            if state["allowed_changes"]:
                line = f"resumed at step {step} with changes: " + ", ".join(state["allowed_changes"])
                print(f"stsmooth: {line}", file=sys.stderr)
                folder.record_resume(line)
        else:
            elapsed_before = 0.0
            if folder.active and folder.checkpoint.is_file():
                print(f"stsmooth: {folder.checkpoint} exists; starting afresh over it (resume=true continues it)",
                      file=sys.stderr)
        pending = state.get("pending_row") if state is not None else None
        # a pending epoch's row may be in metrics.csv already (a kill after the log): it is logged again
        folder.start(resumed - 1 if pending else resumed)
    except BaseException:
        folder.release()
        raise
    m_fn, p_fn = teacher_schedules(cfg.teacher, s.steps_per_epoch, s.total_steps)
    lr_fn = optim.lr_schedule(cfg.optim, s.steps_per_epoch)
    autocast = torch.bfloat16 if (s.device.type == "cuda" and cfg.amp) else None
    progress = Progress(s.total_steps, step, enabled=cfg.progress and dist.is_main())
    if cfg.eval.at_start and step == 0:
        evals["init"] = s.monitor.evaluate(model.student, teacher)
        folder.log({"epoch": 0, "step": 0, **evals["init"]})
    saver = _Saver(s, start_time, elapsed_before, step)
    try:
        if pending:  # killed while the epoch was evaluated or logged
            _end_epoch(s, saver, progress, evals, dict(pending), step, epoch)
        with _StopSignals() as stop:
            while epoch < cfg.optim.epochs:
                start = step - epoch * s.steps_per_epoch  # > 0: resumed inside this epoch, random state restored
                if start == 0:
                    seed_everything(random_state_seed(cfg.seed, dist.rank(), epoch))
                    sums, count = {}, 0
                progress.set_epoch(epoch, cfg.optim.epochs)
                t_epoch = time.perf_counter()
                bad_step = torch.full((), -1, dtype=torch.long, device=s.device)
                lr = m = p = float("nan")
                model.train()
                for batch in s.feed.epoch(epoch, start):
                    lr, m, p = lr_fn(step), m_fn(step), p_fn(step)
                    optim.set_learning_rate(s.optimizer, lr)
                    loss, logs = train_step(model, teacher, s.optimizer, batch, step, m, p, wrapped=s.wrapped,
                                            autocast=autocast, grad_clip=cfg.optim.grad_clip)
                    bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step, bad_step)
                    for k, v in logs.items():
                        v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                        sums[k] = sums.get(k, 0.0) + v
                    step += 1
                    count += 1
                    progress.update(step, s.feed.images_per_step * dist.world_size(), logs, m, p, lr)
                    if count % 50 == 0:
                        _check_finite(bad_step, folder, epoch)
                    if step % s.steps_per_epoch == 0:
                        break  # the epoch's end is saved below, after its evaluation
                    save_now, stop_now = saver.due(step, stop.received is not None)
                    if save_now:
                        _check_finite(bad_step, folder, epoch)
                        saver.save(step, epoch, {"evals": evals, "epoch_logs": {"sums": sums, "count": count}})
                    if stop_now:
                        _stop(stop.received, folder, step, epoch, s.steps_per_epoch)
                _check_finite(bad_step, folder, epoch)
                parallel.average_norm_statistics(model.student)  # one student to evaluate, save and export
                epoch += 1
                seconds = time.perf_counter() - t_epoch
                row = {"epoch": epoch, "step": step, **_mean_logs(sums, count), "lr": lr, "m": m, "p": p,
                       "epoch_seconds": seconds, "images_per_s": count * s.feed.images_per_step
                       * dist.world_size() / max(seconds, 1e-9)}
                if _eval_due(cfg, epoch):
                    # the epoch's training is safe before evaluating; a resume from this checkpoint
                    # evaluates and logs the epoch (its "pending_row") before going on
                    saver.save(step, epoch, {"evals": evals, "pending_row": row})
                _end_epoch(s, saver, progress, evals, row, step, epoch)
                if saver.due(step, stop.received is not None)[1] and epoch < cfg.optim.epochs:
                    _stop(stop.received, folder, step, epoch, s.steps_per_epoch)
    except Preempted:
        folder.close()
        raise
    except BaseException:
        folder.close(failed=True)
        raise
    finally:
        progress.close()
    try:
        # the final epoch's evaluation, from the checkpoint when a kill came between it and results.json
        # (evaluating again would measure the smoothness against itself: param_msd 0)
        final_metrics = (evals["last"] if evals.get("last_epoch") == cfg.optim.epochs
                         else s.monitor.evaluate(model.student, teacher))
        results = _results(s, final_metrics, evals.get("init"),
                           elapsed_before + time.perf_counter() - start_time)
        disagreement = _teacher_disagreement(teacher)
        if dist.is_distributed():
            results["distributed"] = {"world_size": dist.world_size(), "teacher_max_abs_diff": disagreement}
        backbones = backbone_states(model, teacher) if cfg.export else {}  # every rank: FSDP2 gathers
        if folder.active:
            if cfg.export:
                export_backbones(backbones, folder.root)
            curves.plot(folder.root / "metrics.csv", folder.root / "curves.png",
                        title=f"{cfg.method} {Path(cfg.out).name}")
            folder.write_json("results.json", results)  # last: its presence means the run is complete
    except BaseException:
        folder.close(failed=True)
        raise
    folder.close()  # after curves.png and results.json: the experiment logs keep them as files
    return results


def _end_epoch(s: Session, saver: _Saver, progress: Progress, evals: dict, row: dict, step: int, epoch: int) -> None:
    """After ``epoch`` epochs: its evaluation when due, its ``metrics.csv`` row and its checkpoint."""
    if _eval_due(s.cfg, epoch):
        evals["last"] = _evaluate(s, epoch)
        evals["last_epoch"] = epoch
        row.update(evals["last"])
        progress.write(_summary(epoch, evals["last"]))
    s.folder.log(row)
    saver.save(step, epoch, {"evals": evals})
    dist.barrier()


def _evaluate(s: Session, epoch: int) -> dict:
    """The monitor's evaluation after ``epoch``; a failure never costs the training already checkpointed.

    A failure before the last epoch is reported in one line and training goes on; at the
    last epoch it stops the run with a line saying how to evaluate the checkpoint later.
    """
    try:
        return s.monitor.evaluate(s.model.student, s.teacher)
    except (KeyboardInterrupt, NonFiniteLossError):
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        what = f"evaluation after epoch {epoch} failed ({type(err).__name__}: {first})"
        if epoch < s.cfg.optim.epochs:
            print(f"stsmooth: {what}; training goes on", file=sys.stderr)
            return {}
        raise StsmoothError(f"training finished and {s.folder.checkpoint} holds it, but the {what}; evaluate it "
                            f"later with: stsmooth eval knn {s.folder.checkpoint}") from err


def _stop(signal_name: str | None, folder: RunFolder, step: int, epoch: int, steps_per_epoch: int) -> None:
    where = f"step {step} (epoch {epoch + 1}, {step - epoch * steps_per_epoch}/{steps_per_epoch})"
    message = (f"{signal_name or 'a stop signal'} on a rank: checkpoint written at {where} in {folder.checkpoint}; "
               f"exiting with status {PREEMPTED_EXIT} (resume=true continues)")
    if dist.is_main():
        print(f"stsmooth: {message}", file=sys.stderr)
    raise Preempted(message)


def _check_finite(bad_step: torch.Tensor, folder: RunFolder, epoch: int) -> None:
    flag = bad_step.clone()
    if dist.is_distributed():
        import torch.distributed as tdist

        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    if int(flag) >= 0:
        where = (f"{folder.checkpoint} holds the last good epoch ({epoch})" if folder.checkpoint.is_file()
                 else "no checkpoint was written yet")
        raise NonFiniteLossError(f"loss became non-finite at step {int(flag)} (epoch {epoch + 1}); run stopped, "
                                 f"{where}. Lower optim.lr or check the data.")


def _summary(epoch: int, metrics: dict) -> str:
    parts = [f"{k}={v:.4g}" for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))]
    return f"epoch {epoch}: " + " ".join(parts)


def _results(s: Session, metrics: dict, init: dict | None, seconds: float) -> dict:
    keys = s.method.kind.metrics
    res = {"teacher": {k: metrics.get(f"teacher_{k}") for k in keys},
           "student": {k: metrics.get(f"student_{k}") for k in keys},
           "smoothness": {"param_msd": metrics.get("param_msd"), "output_msd": metrics.get("output_msd")},
           "epochs": s.cfg.optim.epochs, "steps": s.total_steps, "seed": s.cfg.seed, "seconds": round(seconds, 2)}
    if s.method.kind.labeled_subset:
        res["labels"] = s.data.meta.get("labels")
    if init is not None:
        res["init"] = {k: init.get(f"teacher_{k}") for k in keys}
    return _no_nan(res)


def _no_nan(value):
    # JSON has no NaN: a metric that does not exist yet is null.
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def backbone_states(model: nn.Module, teacher: Teacher) -> dict[str, dict[str, torch.Tensor]]:
    """Full state dicts of the teacher's and the student's backbones (gathered when sharded: every rank calls it)."""
    return {"teacher": dist.full_state_dict(teacher.module.backbone),
            "student": dist.full_state_dict(model.student.backbone)}


def export_backbones(backbones: dict[str, dict[str, torch.Tensor]], out: Path) -> None:
    """Writes ``teacher.safetensors`` and ``student.safetensors`` (backbones, torchvision names)."""
    for name, state in backbones.items():
        save_safetensors(torchvision_state_dict(state), out / f"{name}.safetensors", metadata={"source": name})
