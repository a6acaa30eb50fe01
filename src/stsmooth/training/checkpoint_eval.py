"""Evaluating a trained checkpoint: ``stsmooth eval PROTOCOL CHECKPOINT [key=value ...]``.

The model is rebuilt from the checkpoint's own config and ``meta``
(:func:`~stsmooth.training.builder.build_model`), the teacher's (or the
student's) backbone is evaluated by one protocol of :mod:`stsmooth.evaluate`
on the run's labelled training images and its test split, read in memory.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stsmooth.data import ImageSet
from stsmooth.evaluate.runner import KINDS, run_eval
from stsmooth.methods import METHODS
from stsmooth.training import checkpoint, config, run_data
from stsmooth.training.builder import build_model, resolve_device
from stsmooth.training.monitor import Features


def split_arguments(items: list[str] | tuple[str, ...]) -> tuple[list[str], dict]:
    """``key=value`` arguments -> (dotted config overrides, protocol options).

    Dotted keys (``data.root=...``) override the run's stored config; the others
    are options of the protocol (``k=200``, ``epochs=50``, ``which=student``).
    Both are read by OmegaConf's dotlist parser (YAML values: ``shots=[1,2]``).
    """
    dotted, plain = [], []
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise ValueError(f"argument {item!r} is not of the form key=value")
        (dotted if "." in key else plain).append(item)
    options = OmegaConf.to_container(config.parse_overrides(plain)) if plain else {}
    return dotted, options


def evaluate_checkpoint(protocol: str, path: str | Path, arguments: list[str] | tuple[str, ...] = ()) -> tuple[str, dict]:
    """Runs one evaluation protocol on a checkpoint's teacher (or student).

    Args:
        protocol: one of :data:`stsmooth.evaluate.runner.KINDS`.
        path: the checkpoint (``checkpoints/last.pt`` of a run folder).
        arguments: ``key=value`` strings, see :func:`split_arguments`; ``which=student``
            evaluates the student instead of the teacher.

    Returns:
        (which, metrics): the evaluated network and the protocol's metrics (plain JSON values).

    Raises:
        ValueError: unknown protocol, bad arguments, bad config overrides or protocol options.
        FileNotFoundError: no checkpoint at ``path``.
    """
    if protocol not in KINDS:
        raise ValueError(f"evaluation protocol {protocol!r} is not one of {', '.join(KINDS)}")
    state = checkpoint.load(path)
    dotted, options = split_arguments(arguments)
    which = options.pop("which", "teacher")
    if which not in checkpoint.WHICH:
        raise ValueError(f"which={which!r} is not one of {', '.join(checkpoint.WHICH)}")
    cfg = config.from_dict(state["config"], dotted)
    device = resolve_device(cfg.device)
    model, teacher, augment = build_model(cfg, METHODS[cfg.method], state["meta"], device)
    model.load_state_dict(state["model"])
    teacher.load_state_dict(state["teacher"])
    net = teacher.module if which == "teacher" else model.student
    if protocol == "finetune":  # a trainable copy: the teacher's weights are frozen
        net = copy.deepcopy(net).requires_grad_(True)
    sets = run_data.load(cfg)
    bank, test = (s if isinstance(s, ImageSet) else s.to_imageset() for s in (sets.bank, sets.test))
    metrics = run_eval(protocol, Features(net), bank, test, device=device, transform=augment["eval"], **options)
    return which, {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}


def write_metrics(metrics: dict, out: str | Path) -> Path:
    """``metrics`` as JSON at ``out``."""
    out = Path(out)
    out.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return out
