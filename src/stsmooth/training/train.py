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
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stsmooth.core import distributed as dist
from stsmooth.core import schedules
from stsmooth.core.teacher import Teacher
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


def setup(cfg: RunConfig) -> Session:
    """Initialises DDP (under torchrun), reads the data and builds model, teacher and optimiser."""
    device = dist.init_from_env() if dist.launched_by_torchrun() else resolve_device(cfg.device)
    if dist.launched_by_torchrun() and cfg.device not in ("auto", str(device), device.type):
        raise ValueError(f"under torchrun each rank uses {device}; leave device=auto (got device={cfg.device!r})")
    method = METHODS[cfg.method]
    world, rank = dist.world_size(), dist.rank()
    if cfg.optim.batch_size % world:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the {world} ranks")
    folder = RunFolder(cfg.out, active=dist.is_main())
    data = run_data.load(cfg, method.kind.labeled_subset, folder.root if folder.active else None)
    model, teacher, augment = build_model(cfg, method, data.meta, device)
    optimizer = optim.build(cfg.optim, model)
    wrapped = parallel.wrap(model, device, compile=cfg.compile)
    local_batch = cfg.optim.batch_size // world
    workers = cfg.data.num_workers
    if method.kind.labeled_subset:
        feed = SemiSupervisedFeed(data.labeled, data.unlabeled, local_batch, int(config_mod.method_config(cfg).mu),
                                  cfg.seed, device, rank, world, cfg.optim.steps_per_epoch, workers)
    else:
        feed = SelfSupervisedFeed(data.train, local_batch, cfg.seed, device, rank, world,
                                  cfg.optim.steps_per_epoch, workers)
    monitor = Monitor(method.kind, data.bank, data.test, augment["eval"], device, cfg.eval,
                      data.meta["num_classes"], seed=cfg.seed)
    steps = feed.steps_per_epoch
    return Session(cfg, method, device, model, teacher, augment, optimizer, feed, monitor, wrapped, folder, data,
                   steps, steps * cfg.optim.epochs)


def training_state(s: Session, step: int, epoch: int) -> dict:
    """The checkpoint dict of a session after ``epoch`` epochs / ``step`` steps."""
    return ckpt.state(model=s.model, optimizer=s.optimizer, teacher=s.teacher, step=step, epoch=epoch,
                      config=config_mod.to_dict(s.cfg), meta=s.data.meta, monitor=s.monitor.state_dict())


def restore(s: Session, state: dict) -> tuple[int, int]:
    """Loads a checkpoint dict into the session; returns (step, epoch)."""
    s.model.load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    s.teacher.load_state_dict(state["teacher"])
    s.monitor.load_state_dict(state.get("monitor", {}))
    ckpt.set_rng_state(state["rng"])
    return int(state["step"]), int(state["epoch"])


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

    flat = torch.cat([t.detach().float().reshape(-1) for t in teacher.module.state_dict().values()
                      if t.is_floating_point()])
    reference = flat.clone()
    tdist.broadcast(reference, 0)
    diff = (flat - reference).abs().max()
    tdist.all_reduce(diff, op=tdist.ReduceOp.MAX)
    return float(diff)


def run(cfg: RunConfig) -> dict:
    """Trains as ``cfg`` says and returns ``results.json``'s content.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last checkpoint is the last good epoch).
    """
    start_time = time.perf_counter()
    s = setup(cfg)
    folder, model, teacher = s.folder, s.model, s.teacher
    folder.save_config(cfg)
    step = epoch = 0
    resumed = None
    if cfg.resume and folder.checkpoint.is_file():
        state = ckpt.load(folder.checkpoint, map_location=s.device)
        step, epoch = restore(s, state)
        resumed = step
        elapsed_before = float(state.get("seconds", 0.0))
    else:
        elapsed_before = 0.0
        if folder.active and folder.checkpoint.is_file():
            print(f"stsmooth: {folder.checkpoint} exists; starting afresh over it (resume=true continues it)",
                  file=sys.stderr)
    folder.start(resumed)
    m_fn, p_fn = teacher_schedules(cfg.teacher, s.steps_per_epoch, s.total_steps)
    lr_fn = optim.lr_schedule(cfg.optim, s.steps_per_epoch)
    autocast = torch.bfloat16 if (s.device.type == "cuda" and cfg.amp) else None
    progress = Progress(s.total_steps, step, enabled=cfg.progress and dist.is_main())
    init_metrics = None
    if cfg.eval.at_start and step == 0:
        init_metrics = s.monitor.evaluate(model.student, teacher)
        folder.log({"epoch": 0, "step": 0, **init_metrics})
    final_metrics: dict = {}
    try:
        while epoch < cfg.optim.epochs:
            seed_everything(random_state_seed(cfg.seed, dist.rank(), epoch))
            progress.set_epoch(epoch, cfg.optim.epochs)
            t_epoch = time.perf_counter()
            sums: dict = {}
            bad_step = torch.full((), -1, dtype=torch.long, device=s.device)
            count = 0
            lr = m = p = float("nan")
            model.train()
            for batch in s.feed.epoch(epoch):
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
            _check_finite(bad_step, folder, epoch)
            epoch += 1
            seconds = time.perf_counter() - t_epoch
            row = {"epoch": epoch, "step": step, **_mean_logs(sums, count), "lr": lr, "m": m, "p": p,
                   "epoch_seconds": seconds, "images_per_s": count * s.feed.images_per_step * dist.world_size()
                   / max(seconds, 1e-9)}
            if _eval_due(cfg, epoch):
                final_metrics = s.monitor.evaluate(model.student, teacher)
                row.update(final_metrics)
                progress.write(_summary(epoch, final_metrics))
            folder.log(row)
            if folder.active:
                state = training_state(s, step, epoch)
                state["seconds"] = elapsed_before + time.perf_counter() - start_time
                ckpt.save(state, folder.checkpoint)
            dist.barrier()
    except BaseException:
        folder.close(failed=True)
        raise
    finally:
        progress.close()
    if not final_metrics:  # a resumed run that had already finished
        final_metrics = s.monitor.evaluate(model.student, teacher)
    results = _results(s, final_metrics, init_metrics, elapsed_before + time.perf_counter() - start_time)
    disagreement = _teacher_disagreement(teacher)
    if dist.is_distributed():
        results["distributed"] = {"world_size": dist.world_size(), "teacher_max_abs_diff": disagreement}
    if folder.active:
        folder.write_json("results.json", results)
        if cfg.export:
            export_backbones(model, teacher, folder.root)
        curves.plot(folder.root / "metrics.csv", folder.root / "curves.png", title=f"{cfg.method} {Path(cfg.out).name}")
    folder.close()  # after curves.png and results.json: the experiment logs keep them as files
    return results


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


def export_backbones(model: nn.Module, teacher: Teacher, out: Path) -> None:
    """Writes ``teacher.safetensors`` and ``student.safetensors`` (backbones, torchvision names)."""
    for name, net in (("teacher", teacher.module), ("student", model.student)):
        save_safetensors(torchvision_state_dict(net.backbone), out / f"{name}.safetensors",
                         metadata={"source": name})
