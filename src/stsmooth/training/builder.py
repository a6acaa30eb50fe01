"""Building a run's parts from its config: device, augmentations, model and teacher.

:func:`build_model` is all that is needed to rebuild a trained model from a
checkpoint (its config and ``meta``) without reading any data: ``stsmooth
eval``, ``stsmooth export`` and the benchmarks use it, as does the loop.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from stsmooth import augment as augment_mod
from stsmooth import models as models_mod
from stsmooth.core import distributed as dist
from stsmooth.core.norm import convert_sync_batchnorm
from stsmooth.core.teacher import Teacher
from stsmooth.methods.contract import Method, MethodModel
from stsmooth.training.config import RunConfig, method_config


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device=cpu or device=auto")
    return device


def seed_everything(seed: int) -> None:
    """Seeds torch, numpy and python's global random generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def build_augment(cfg: RunConfig, recipes: dict[str, str], meta: dict) -> dict[str, nn.Module]:
    """The method's augmentation modules plus ``normalize`` and ``eval``.

    Options of ``cfg.augment`` that are set are given to each recipe that has
    them; ``augment.recipes.<recipe>`` sets options of one recipe.
    """
    a = cfg.augment
    size = meta["image_size"]
    common = {"flip": a.flip, "crop_scale": tuple(a.crop_scale) if a.crop_scale is not None else None,
              "blur": a.blur, "color": a.color}
    out: dict[str, nn.Module] = {}
    for key, recipe in recipes.items():
        allowed = augment_mod.options(recipe)
        opts = {k: v for k, v in common.items() if v is not None and k in allowed}
        if "std" in allowed:  # noise in the units of the normalisation that follows
            opts["std"] = tuple(meta["std"])
        opts.update(dict(a.recipes.get(recipe, {})))
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
        out[key] = augment_mod.build(recipe, size, **opts)
    out["normalize"] = augment_mod.Normalize(meta["mean"], meta["std"])
    out["eval"] = augment_mod.build("eval", size, crop_fraction=a.eval_crop_fraction)
    return out


def check_batch_for_norm(model: nn.Module, local_batch: int) -> None:
    """BatchNorm needs two images per rank's batch to estimate a variance (one gives none, and PyTorch stops).

    Raises:
        ValueError: ``local_batch < 2`` and ``model`` holds a BatchNorm layer.
    """
    if local_batch < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError(f"optim.batch_size={local_batch * dist.world_size()} gives {local_batch} image per rank, "
                         f"but the model has BatchNorm layers, which need at least 2; raise optim.batch_size")


def build_model(cfg: RunConfig, method: Method, meta: dict,
                device: torch.device) -> tuple[MethodModel, Teacher, dict[str, nn.Module]]:
    """The method's model and its teacher, as the config and ``meta`` describe them.

    Args:
        cfg: the run's config.
        method: ``METHODS[cfg.method]``.
        meta: what the data told about itself (:mod:`stsmooth.training.run_data`).
        device: where model, teacher and augmentations live.

    Returns:
        (model, teacher, augment): model on ``device``; ``model.student`` may hold
        SyncBN layers (norm_baseline=syncbn under DDP on CUDA).
    """
    mcfg = method_config(cfg)
    seed_everything(cfg.seed)  # the same initial weights on every rank
    backbone = models_mod.build(cfg.model.name, num_classes=0, in_channels=meta["in_channels"],
                                **dict(cfg.model.options))
    augment = build_augment(cfg, method.augment_recipes(mcfg), meta)
    model = method.build(mcfg, backbone, meta["num_classes"], augment)
    check_batch_for_norm(model, cfg.optim.batch_size // dist.world_size())
    if cfg.norm_baseline == "shufflebn":
        if not hasattr(model, "shuffle_bn"):
            raise ValueError(f"method {cfg.method!r} has no ShuffleBN option; use norm_baseline=none")
        model.shuffle_bn = True
    if cfg.norm_baseline == "syncbn" and dist.is_distributed():
        if device.type != "cuda":
            raise ValueError("norm_baseline=syncbn needs CUDA under DDP (PyTorch's SyncBatchNorm is GPU-only)")
        model = convert_sync_batchnorm(model)
    model.to(device)
    for module in augment.values():
        module.to(device)
    if device.type == "cuda" and cfg.amp:
        model.to(memory_format=torch.channels_last)
    t = cfg.teacher
    # Runs with different seeds must not share their draws; an explicit teacher.seed still wins.
    draw_seed = cfg.seed if t.seed is None else t.seed
    # nonfinite="ignore": the loop checks the loss lazily instead of syncing on every update.
    teacher = Teacher(model.student, momentum=t.momentum, preserve_prob=t.preserve_prob,
                      granularity=t.granularity, norm=t.norm, seed=draw_seed, nonfinite="ignore")
    return model, teacher, augment
