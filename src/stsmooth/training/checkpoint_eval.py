"""Evaluating a trained checkpoint: ``stsmooth eval PROTOCOL CHECKPOINT [key=value ...]``.

The model is rebuilt from the checkpoint's own config and ``meta``
(:func:`restore`), and the teacher's (or the student's) backbone is evaluated
by one protocol of :mod:`stsmooth.evaluate` on the run's labelled training
images and its test split (image folders streamed from disk in batches; fine-tuning
reads them into memory) (:func:`evaluate_checkpoint`), or
under the 15 ImageNet-C corruptions (:func:`evaluate_corruption`, paper 000
§4.4, :mod:`stsmooth.evaluate.corruption`).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.data import ImageSet
from stsmooth.evaluate.corruption import (
    check_precomputed,
    compare,
    corruption,
    format_markdown,
    split_results,
    write_outputs,
)
from stsmooth.evaluate.corruption_ops import CORRUPTIONS, SEVERITIES, check_name, check_severity
from stsmooth.evaluate.features import eval_mode, inference_copy, labelled_features
from stsmooth.evaluate.knn import knn_scores
from stsmooth.evaluate.linear import train_linear
from stsmooth.evaluate.runner import KINDS, run_eval
from stsmooth.files import atomic_write
from stsmooth.methods import METHODS
from stsmooth.methods.contract import Kind, MethodModel
from stsmooth.training import checkpoint, config, run_data
from stsmooth.training.builder import build_model, resolve_device
from stsmooth.training.config import RunConfig
from stsmooth.training.monitor import Features

#: what ``stsmooth eval`` runs: the protocols of :func:`~stsmooth.evaluate.runner.run_eval`, and corruption
PROTOCOLS = (*KINDS, "corruption")
#: ``key=value`` options of ``stsmooth eval corruption`` (see :func:`evaluate_corruption`)
CORRUPTION_OPTIONS = ("which", "protocol", "source", "baseline", "corruptions", "severities", "seed", "batch_size",
                      "table", "frost_images", "k", "temperature", "epochs", "lr", "weight_decay",
                      "feature_batch_size")
#: how a self-supervised backbone is scored under corruption: a linear probe or kNN on clean features
CORRUPTION_CLASSIFIERS = ("linear", "knn")


@dataclass
class Restored:
    """A run rebuilt from its checkpoint (:func:`restore`)."""

    cfg: RunConfig
    meta: dict
    kind: Kind
    model: MethodModel
    teacher: Teacher
    eval_transform: nn.Module  # the run's evaluation recipe: uint8 -> [0, 1] floats at the training size
    device: torch.device

    def nets(self) -> dict[str, nn.Module]:
        """``{"teacher": ..., "student": ...}``: the two networks a checkpoint holds."""
        return {"teacher": self.teacher.module, "student": self.model.student}


def restore(path: str | Path, dotted: list[str] | tuple[str, ...] = ()) -> Restored:
    """The model and teacher of a checkpoint, built from its own config (``dotted`` overrides it) and ``meta``.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: a bad override.
    """
    state = checkpoint.load(path)
    cfg = config.from_dict(state["config"], list(dotted))
    device = resolve_device(cfg.device)
    method = METHODS[cfg.method]
    model, teacher, augment = build_model(cfg, method, state["meta"], device)
    model.load_state_dict(state["model"])
    teacher.load_state_dict(state["teacher"])
    return Restored(cfg, state["meta"], method.kind, model, teacher, augment["eval"], device)


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
        raise ValueError(f"evaluation protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"
                         + ("; corruption is evaluate_corruption" if protocol == "corruption" else ""))
    dotted, options = split_arguments(arguments)
    which = options.pop("which", "teacher")
    if which not in checkpoint.WHICH:
        raise ValueError(f"which={which!r} is not one of {', '.join(checkpoint.WHICH)}")
    run = restore(path, dotted)
    net = run.nets()[which]
    if protocol == "finetune":  # a trainable copy: the teacher's weights are frozen
        net = copy.deepcopy(net).requires_grad_(True)
    sets = run_data.load(run.cfg)
    bank, test = sets.bank, sets.test  # folders are streamed in batches by the feature protocols
    if protocol == "finetune":  # trains on the images themselves: needs them in memory
        bank, test = (s if isinstance(s, ImageSet) else s.to_imageset() for s in (bank, test))
    metrics = run_eval(protocol, Features(net), bank, test, device=run.device, transform=run.eval_transform,
                       **options)
    return which, {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}


def write_metrics(metrics: dict, out: str | Path) -> Path:
    """``metrics`` as JSON at ``out``, written atomically (:func:`stsmooth.files.atomic_write`)."""
    text = json.dumps(metrics, indent=2, default=float) + "\n"
    return atomic_write(out, lambda tmp: Path(tmp).write_text(text))


def _as_list(value, name: str) -> list:
    """A comma-separated string (``fog,pixelate``), a list or one value, as a non-empty list."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise ValueError(f"{name} is empty")
    return list(value)


def _classifiers(nets: dict[str, nn.Module], kind: Kind, protocol: str, bank, transform, device, num_classes: int,
                 opts: dict, log: Callable[[str], None]) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Class scorers per network: its own head (classifier methods), else one fitted on clean bank features.

    The scorers run :func:`~stsmooth.evaluate.features.inference_copy` of each network (BN
    folded, channels-last on CPU: the forward passes are most of the evaluation's time);
    the probe is fitted on the network's own features, as every other protocol does.
    """
    if not kind.knn:
        return {name: inference_copy(net) for name, net in nets.items()}
    out = {}
    for name, net in nets.items():
        f_train, y_train = labelled_features(Features(net), bank, opts.get("feature_batch_size", 256), device,
                                             transform)
        features = Features(inference_copy(net))
        if protocol == "knn":
            k, t = opts.get("k", 20), opts.get("temperature", 0.07)

            def score(x, features=features, f_train=f_train, y_train=y_train, k=k, t=t):
                return knn_scores(f_train, y_train, features(x).float(), k=k, temperature=t, num_classes=num_classes)
        else:
            linear = {key: opts[key] for key in ("epochs", "lr", "weight_decay") if key in opts}
            head = train_linear(f_train, y_train, num_classes, **linear)
            log(f"corruption: linear probe of the {name} fitted on {len(f_train)} clean training features")

            def score(x, features=features, head=head):
                return head(features(x).float())
        out[name] = score
    return out


def evaluate_corruption(path: str | Path, arguments: list[str] | tuple[str, ...] = (),
                        out: str | Path | None = None) -> tuple[str, dict[str, Path]]:
    """``stsmooth eval corruption CHECKPOINT [key=value ...] [--out DIR]`` (paper 000 §4.4, Fig. 5).

    Keys (:data:`CORRUPTION_OPTIONS`): ``which`` (teacher | student | both, default both),
    ``protocol`` (linear | knn, self-supervised checkpoints), ``source`` (precomputed set;
    default generate), ``baseline`` (a checkpoint to compare with, e.g. the TMA run),
    ``corruptions`` and ``severities`` (comma lists or lists), ``seed``, ``batch_size``,
    ``table`` (cifar | imagenet), ``frost_images`` (folder), ``k``, ``temperature``, ``epochs``,
    ``lr``, ``weight_decay``, ``feature_batch_size``; dotted keys (``data.root=...``) override
    the run's config. All go through the one ``key=value`` parser (:func:`split_arguments`).

    Args:
        path: the checkpoint.
        arguments: ``key=value`` strings.
        out: folder of corruption.json / .md / .png (and corruption_vs_baseline.png); default
            ``corruption/`` beside the checkpoint (a ``.json`` path means its folder).

    Returns:
        (the Markdown tables, the written files by kind).

    Raises:
        ValueError: an unknown key or a bad value (one line).
    """
    dotted, opts = split_arguments(arguments)
    for key in opts:
        if key not in CORRUPTION_OPTIONS:
            raise ValueError(f"unknown option {key!r} for eval corruption; allowed: {', '.join(CORRUPTION_OPTIONS)}")
    for key in ("source", "baseline", "frost_images"):  # paths, whatever YAML would read in them
        if key in opts:
            opts[key] = str(opts[key])
    which = opts.get("which", "both")
    if which not in ("teacher", "student", "both"):
        raise ValueError(f"which={which!r} is not one of teacher, student, both")
    protocol = opts.get("protocol", "linear")
    if protocol not in CORRUPTION_CLASSIFIERS:
        raise ValueError(f"protocol={protocol!r} is not one of {', '.join(CORRUPTION_CLASSIFIERS)}")
    corruptions = [check_name(c) for c in _as_list(opts.get("corruptions", list(CORRUPTIONS)), "corruptions")]
    severities = [check_severity(int(s) if isinstance(s, str) and s.isdigit() else s)
                  for s in _as_list(opts.get("severities", list(SEVERITIES)), "severities")]
    if "source" in opts:
        check_precomputed(opts["source"], corruptions, severities)

    def log(text: str) -> None:
        print(text, file=sys.stderr)

    keep = ("teacher", "student") if which == "both" else (which,)
    run = restore(path, dotted)
    nets = {k: run.nets()[k] for k in keep}
    sets = run_data.load(run.cfg)
    num_classes = int(run.meta["num_classes"])
    predictors = _classifiers(nets, run.kind, protocol, sets.bank, run.eval_transform, run.device, num_classes,
                              opts, log)
    baseline_nets = {}
    if "baseline" in opts:
        base = restore(opts["baseline"], dotted)
        if (base.meta["num_classes"], base.meta["image_size"], base.cfg.data.name) != (
                num_classes, run.meta["image_size"], run.cfg.data.name):
            raise ValueError(f"baseline {opts['baseline']} was trained on {base.cfg.data.name} "
                             f"({base.meta['num_classes']} classes, {base.meta['image_size']} px) but the checkpoint "
                             f"on {run.cfg.data.name} ({num_classes} classes, {run.meta['image_size']} px)")
        baseline_nets = {k: base.nets()[k] for k in keep}
        for name, p in _classifiers(baseline_nets, base.kind, protocol, sets.bank, run.eval_transform, run.device,
                                    num_classes, opts, log).items():
            predictors["baseline/" + name] = p
    with eval_mode(*nets.values(), *baseline_nets.values()):
        results = corruption(
            predictors, sets.test, source=opts.get("source"), corruptions=corruptions, severities=severities,
            seed=int(opts.get("seed", 0)), batch_size=opts.get("batch_size"), device=run.device,
            transform=run.eval_transform, table=opts.get("table"), frost_images=opts.get("frost_images"),
            num_classes=num_classes, progress=True)
    comparisons, baseline = None, None
    if "baseline" in opts:
        baseline = split_results(results, [k for k in results["top1"] if k.startswith("baseline/")], "baseline/")
        results = split_results(results, list(keep))
        comparisons = {name: compare(results, baseline, name) for name in keep}
    how = ("the classifier head" if not run.kind.knn
           else f"{'a linear probe' if protocol == 'linear' else 'kNN'} on clean training features")
    note = f"Classifier: {how}." + (f" Baseline: {opts['baseline']}." if "baseline" in opts else "")
    out_dir = Path(out) if out else Path(path).parent / "corruption"
    out_dir = out_dir.parent if out_dir.suffix == ".json" else out_dir  # --out of the other protocols is a file
    paths = write_outputs(results, out_dir, comparisons, baseline, title=str(path), note=note)
    return format_markdown(results, comparisons, str(path), note), paths
