"""Corruption robustness, the ImageNet-C protocol (paper 000 §4.4, Fig. 5), for any data set.

Top-1 accuracy on the test split under each of the 15 corruptions of
Hendrycks & Dietterich (ICLR 2019) at severities 1-5, the clean accuracy, the
mean over the 75 cells and, against a baseline, the per-cell differences (000
Fig. 5 left), the per-severity means (Fig. 5 right; the paper's "+1.5 points of
STS over TMA" is their mean) and the mean corruption error (mCE, and the
relative mCE, H&D §3) with the baseline as the reference model.

Corrupted images come from one of two sources:

* **generated** on the fly (:mod:`stsmooth.evaluate.corruption_ops`), from the
  clean test images after the evaluation transform (resize / centre crop to
  the model's size; ImageNet-C corrupts the 224-px centre crops likewise),
  deterministically from a seed: batch i, corruption c, severity s draw from a
  generator seeded with ``(seed, i, c, s)``, so the same seed and batch size
  give the same images on a device, whatever the order of evaluation;
* **precomputed** sets as distributed: the ImageNet-C layout
  ``<root>/<corruption>/<severity>/<class>/<image>`` (classes sorted by folder
  name, as the clean ImageNet folders) and the CIFAR-10-C / CIFAR-100-C layout
  ``<root>/<corruption>.npy`` (5 x N images, N x H x W x C uint8, severity 1
  first) plus ``<root>/labels.npy``. Images already at the model's size are used
  as they are (ImageNet-C's are 224-px crops).

Which classifier gives the top-1 (``stsmooth eval corruption CKPT``):

* semi-supervised checkpoints: the network's own classifier head;
* self-supervised checkpoints: a classifier fitted once on *clean* training
  features of the frozen backbone and applied to features of corrupted test
  images. ``protocol=linear`` (default) is the linear probe of
  :func:`~stsmooth.evaluate.linear.train_linear`, the classifier whose
  ImageNet-C top-1 paper 000 reports (BYOL's linear evaluation, §4.1 / §4.4);
  ``protocol=knn`` the weighted kNN of the training monitor (k = 20, T = 0.07),
  which costs one bank search per cell.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from stsmooth.augment.base import fit_to_size
from stsmooth.evaluate.corruption_ops import (
    CORRUPTIONS,
    SEVERITIES,
    check_name,
    check_severity,
    corrupt,
    table_for,
)
from stsmooth.evaluate.features import eval_mode

__all__ = ["CORRUPTIONS", "SEVERITIES", "check_precomputed", "compare", "corrupt", "corruption", "format_markdown",
           "imagenet_c_set", "main", "read_cifar_c", "table_for", "write_outputs"]

PROTOCOLS = ("linear", "knn")
_ELEMENTS_PER_BATCH = 1 << 23  # default batch: ~8M pixel values (10,000 images at 28x28, 55 at 3x224x224)
_FORWARD = 1024  # images per forward pass of a predictor


# ---------------------------------------------------------------- precomputed sets


def _layout(root: Path) -> str:
    if not root.is_dir():
        raise FileNotFoundError(f"precomputed corruption set: {root} is not a folder")
    return "npy" if any(root.glob("*.npy")) else "folders"


def check_precomputed(root, corruptions=CORRUPTIONS, severities=SEVERITIES) -> str:
    """The layout of a precomputed set (``"npy"`` or ``"folders"``), checked for every cell.

    Raises:
        FileNotFoundError: naming the first missing path, in the order labels,
            then corruption by corruption, severity by severity.
    """
    root = Path(root)
    layout = _layout(root)
    if layout == "npy":
        paths = [root / "labels.npy", *(root / f"{c}.npy" for c in corruptions)]
    else:
        paths = [root / c / str(s) for c in corruptions for s in severities]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"precomputed corruption set {root}: missing {path}")
    return layout


def _check_classes(labels_from: str, found: int, num_classes: int | None) -> None:
    if num_classes is not None and found != num_classes:
        raise ValueError(f"{labels_from} has {found} classes but the checkpoint's model has {num_classes}")


def read_cifar_c(root, corruption: str, severity: int, num_classes: int | None = None):
    """One cell of a CIFAR-10-C / CIFAR-100-C folder as an ImageSet.

    Args:
        root: folder with ``<corruption>.npy`` ((5 N, H, W, C) or (5 N, H, W) uint8,
            severity 1 first) and ``labels.npy`` ((5 N,) ints).
        corruption, severity: the cell.
        num_classes: when given, the labels' class count (max + 1) must equal it.

    Returns:
        ImageSet with uint8 images (N, C, H, W) and int64 labels (N,).
    """
    from stsmooth.data import ImageSet

    root = Path(root)
    check_name(corruption)
    check_severity(severity)
    path = root / f"{corruption}.npy"
    check_precomputed(root, [corruption], [severity])
    images = np.load(path, mmap_mode="r")
    labels = np.load(root / "labels.npy", mmap_mode="r")
    if len(images) != len(labels) or len(images) % 5:
        raise ValueError(f"{path} holds {len(images)} images and labels.npy {len(labels)} labels; "
                         f"expected the same multiple of 5 (5 severities)")
    n = len(images) // 5
    part = np.asarray(images[(severity - 1) * n : severity * n])
    part = part[..., None] if part.ndim == 3 else part
    y = torch.from_numpy(np.asarray(labels[(severity - 1) * n : severity * n]).astype(np.int64))
    found = int(np.max(labels)) + 1
    _check_classes(f"{root / 'labels.npy'} (labels 0..{found - 1})", found, num_classes)
    return ImageSet(torch.from_numpy(part).permute(0, 3, 1, 2).contiguous(), y, [str(k) for k in range(found)])


def imagenet_c_set(root, corruption: str, severity: int, num_classes: int | None = None, mode: str = "RGB"):
    """One cell of an ImageNet-C folder, ``<root>/<corruption>/<severity>/<class>/<image>``, as a FolderSet."""
    from stsmooth.data import FolderSet

    check_name(corruption)
    check_severity(severity)
    check_precomputed(root, [corruption], [severity])
    folder = Path(root) / corruption / str(severity)
    images = FolderSet(folder, mode=mode)
    _check_classes(f"{folder} ({len(images.classes)} class folders)", len(images.classes), num_classes)
    return images


# ---------------------------------------------------------------- evaluation


def _auto_batch(shape) -> int:
    return max(1, _ELEMENTS_PER_BATCH // max(1, int(np.prod(shape[1:]))))


def _batches(images_set, batch_size: int, device):
    """(uint8 images, int64 labels) batches of an ImageSet or a FolderSet, in order, on ``device``."""
    if hasattr(images_set, "images"):
        for i in range(0, len(images_set), batch_size):
            yield (images_set.images[i : i + batch_size].to(device, non_blocking=True),
                   images_set.labels[i : i + batch_size].to(device))
        return
    from stsmooth.data import FolderLoader

    workers = 0 if len(images_set) <= batch_size else None
    yield from FolderLoader(images_set, batch_size, shuffle=False, drop_last=False, device=device, num_workers=workers)


def _cell_seed(seed: int, batch: int, corruption: str, severity: int) -> int:
    return int(np.random.SeedSequence([seed, batch, CORRUPTIONS.index(corruption), severity]).generate_state(1)[0])


class _Tally:
    """Correct top-1 predictions per (predictor, cell)."""

    def __init__(self, predictors: Mapping[str, Callable]):
        self.predictors = predictors
        self.hits: dict = {}
        self.count: dict = {}

    @torch.no_grad()
    def add(self, cell, images: torch.Tensor, labels: torch.Tensor) -> None:
        for name, predict in self.predictors.items():
            # forward passes of at most _FORWARD images: a 10,000-image batch of 28-px pictures is
            # cheap to corrupt at once, but its activations would not fit in the caches
            hit = sum((predict(images[i : i + _FORWARD]).argmax(dim=1) == labels[i : i + _FORWARD]).sum()
                      for i in range(0, len(labels), _FORWARD))
            self.hits[name, cell] = self.hits.get((name, cell), 0) + hit
        self.count[cell] = self.count.get(cell, 0) + len(labels)

    def top1(self, name, cell) -> float:
        return 100.0 * int(self.hits[name, cell]) / self.count[cell]


def corruption(predictors: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], test, *, source=None,
               corruptions=CORRUPTIONS, severities=SEVERITIES, seed: int = 0, batch_size: int | None = None,
               device=None, transform: Callable | None = None, size: int | None = None, table: str | None = None,
               frost_images=None, num_classes: int | None = None, progress: bool = False) -> dict:
    """Top-1 of every predictor on clean and corrupted test images.

    Args:
        predictors: name -> callable mapping a batch (B, C, H, W) (uint8, or float in
            [0, 1], at the model's size, on ``device``) to (B, K) class scores. E.g.
            ``{"teacher": teacher_net, "student": student_net}``; all see the same images.
        test: ImageSet or FolderSet, the clean test split (labels 0..K-1).
        source: None to generate the corruptions from ``test``; else the folder of a
            precomputed set (see the module docstring).
        corruptions: names among :data:`CORRUPTIONS` (default all 15).
        severities: among 1..5 (default all).
        seed: seed of the generated corruptions.
        batch_size: images per batch; default ~8M pixel values per batch.
        device: where images are corrupted and classified (default CPU).
        transform: clean uint8 batch -> float in [0, 1] at the model's size (the
            evaluation recipe); applied before corrupting. Default ``/255``.
        size: the model's input side, to which precomputed images of another size
            are resized (shorter side, centre crop); default ``transform.size`` if any.
        table: ``"cifar"`` / ``"imagenet"`` parameters; default by image size
            (:func:`~stsmooth.evaluate.corruption_ops.table_for`).
        frost_images: folder of frost pictures (default: procedural frost).
        num_classes: the model's class count; the test set's and precomputed labels must match it.
        progress: print progress lines to stderr.

    Returns:
        ``{"clean": {name: top1}, "top1": {name: {corruption: {"1": top1, ..}}},
        "mean": {name: mean over cells}, "per_severity": {name: {"1": ..}},
        "per_corruption": {name: {corruption: ..}}, "images", "source", "seed",
        "table", "corruptions", "severities"}``; accuracies in percent.
    """
    corruptions = [check_name(c) for c in corruptions]
    severities = [check_severity(s) for s in severities]
    if not predictors:
        raise ValueError("predictors is empty; give at least one name -> network")
    _check_classes("the test set", getattr(test, "num_classes", None) or num_classes, num_classes)
    device = torch.device("cpu") if device is None else torch.device(device)
    transform = transform if transform is not None else (lambda x: x.float() / 255)
    size = size if size is not None else getattr(transform, "size", None)
    first = test.images[:1] if hasattr(test, "images") else test[0][0][None]
    batch_size = batch_size or _auto_batch(transform(first.to(device)).shape)
    tally = _Tally(predictors)
    layout = check_precomputed(source, corruptions, severities) if source is not None else None
    if layout is None:
        side = None
        for b, (images, labels) in enumerate(_batches(test, batch_size, device)):
            clean = transform(images)
            side = max(clean.shape[-2:])
            tally.add("clean", clean, labels)
            for c in corruptions:
                for s in severities:
                    g = torch.Generator(device=device).manual_seed(_cell_seed(seed, b, c, s))
                    tally.add((c, s), corrupt(clean, c, s, generator=g, table=table, frost_images=frost_images), labels)
            if progress and (b + 1) % max(1, math.ceil(len(test) / batch_size) // 10) == 0:
                print(f"corruption: {tally.count['clean']} of {len(test)} images", file=sys.stderr)
        table = table or table_for(side)
    else:
        for images, labels in _batches(test, batch_size, device):
            tally.add("clean", transform(images), labels)
        mode = "L" if first.shape[1] == 1 else "RGB"
        for c in corruptions:
            for s in severities:
                cell = (read_cifar_c(source, c, s, num_classes) if layout == "npy"
                        else imagenet_c_set(source, c, s, num_classes, mode))
                for images, labels in _batches(cell, batch_size, device):
                    if size is not None and tuple(images.shape[-2:]) != (size, size):
                        images = fit_to_size(images.float() / 255, size)
                    tally.add((c, s), images, labels)
            if progress:
                print(f"corruption: {c} done", file=sys.stderr)
    return _summary(tally, corruptions, severities, source, seed, table, len(test))


def _summary(tally: _Tally, corruptions, severities, source, seed, table, n) -> dict:
    out = {"corruptions": list(corruptions), "severities": list(severities),
           "source": "generated" if source is None else str(source),
           "seed": seed if source is None else None, "table": table if source is None else None, "images": n,
           "clean": {}, "top1": {}, "mean": {}, "per_severity": {}, "per_corruption": {}}
    for name in tally.predictors:
        cells = {c: {str(s): tally.top1(name, (c, s)) for s in severities} for c in corruptions}
        out["clean"][name] = tally.top1(name, "clean")
        out["top1"][name] = cells
        out["mean"][name] = float(np.mean([v for row in cells.values() for v in row.values()]))
        out["per_severity"][name] = {str(s): float(np.mean([cells[c][str(s)] for c in corruptions])) for s in severities}
        out["per_corruption"][name] = {c: float(np.mean(list(cells[c].values()))) for c in corruptions}
    return out


def compare(results: dict, baseline: dict, name: str, baseline_name: str | None = None) -> dict:
    """Differences of one predictor's results to a baseline's, cell by cell.

    Args:
        results, baseline: outputs of :func:`corruption` over the same cells.
        name: predictor in ``results``; ``baseline_name`` (default the same) in ``baseline``.

    Returns:
        ``{"difference": {corruption: {"1": top1 - baseline top1, ..}}, "mean_difference",
        "per_severity_difference": {"1": ..}, "clean_difference", "mCE", "relative_mCE"}``.
        mCE (H&D §3, in %): the mean over corruptions of sum_s E / sum_s E_baseline with
        E = 100 - top1; relative mCE: of sum_s (E - E_clean) / sum_s (E_b - E_b,clean).
        A zero denominator gives NaN.
    """
    baseline_name = baseline_name or name
    if results["corruptions"] != baseline["corruptions"] or results["severities"] != baseline["severities"]:
        raise ValueError("results and baseline cover different corruptions or severities")
    mine, base = results["top1"][name], baseline["top1"][baseline_name]
    diff = {c: {s: mine[c][s] - base[c][s] for s in mine[c]} for c in mine}
    clean, base_clean = 100 - results["clean"][name], 100 - baseline["clean"][baseline_name]

    def ratio(num, den):
        return num / den if den != 0 else math.nan

    ce = [ratio(sum(100 - v for v in mine[c].values()), sum(100 - v for v in base[c].values())) for c in mine]
    rel = [ratio(sum(100 - v - clean for v in mine[c].values()), sum(100 - v - base_clean for v in base[c].values()))
           for c in mine]
    severities = [str(s) for s in results["severities"]]
    return {
        "difference": diff,
        "mean_difference": results["mean"][name] - baseline["mean"][baseline_name],
        "per_severity_difference": {s: results["per_severity"][name][s] - baseline["per_severity"][baseline_name][s]
                                    for s in severities},
        "clean_difference": results["clean"][name] - baseline["clean"][baseline_name],
        "mCE": 100 * float(np.mean(ce)),
        "relative_mCE": 100 * float(np.mean(rel)),
    }


# ---------------------------------------------------------------- outputs


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _grid(values: dict, corruptions, severities, signed: bool) -> list[str]:
    fmt = "{:+.2f}" if signed else "{:.2f}"
    lines = [_row(["corruption", *map(str, severities), "mean"]), _row(["---"] + ["---:"] * (len(severities) + 1))]
    for c in corruptions:
        row = [values[c][str(s)] for s in severities]
        lines.append(_row([c, *(fmt.format(v) for v in row), fmt.format(float(np.mean(row)))]))
    means = [float(np.mean([values[c][str(s)] for c in corruptions])) for s in severities]
    lines.append(_row(["**mean**", *(fmt.format(v) for v in means), fmt.format(float(np.mean(means)))]))
    return lines


def format_markdown(results: dict, comparisons: dict | None = None, title: str = "", note: str = "") -> str:
    """``corruption.md``: per predictor a table (rows = corruption, columns = severity) of top-1,
    and with a baseline the same table of differences plus mCE."""
    cs, ss = results["corruptions"], results["severities"]
    src = results["source"]
    src = (f"generated on the fly (seed {results['seed']}, {results['table']} parameters of Hendrycks & Dietterich)"
           if src == "generated" else f"precomputed set {src}")
    lines = [f"# Corruption robustness{': ' + title if title else ''}", "",
             f"Top-1 (%) on {results['images']} test images; corruptions {src}.{' ' + note if note else ''}", ""]
    for name in results["top1"]:
        summary = (f"clean top-1 {results['clean'][name]:.2f}; mean corruption top-1 "
                   f"{results['mean'][name]:.2f} over {len(cs) * len(ss)} cells")
        lines += [f"## {name}", "", summary, ""]
        lines += _grid(results["top1"][name], cs, ss, signed=False) + [""]
        if comparisons and name in comparisons:
            cmp = comparisons[name]
            summary = (f"mean difference {cmp['mean_difference']:+.2f} points (clean {cmp['clean_difference']:+.2f}); "
                       f"mCE {cmp['mCE']:.1f}%, relative mCE {cmp['relative_mCE']:.1f}% (baseline = 100%)")
            lines += [f"### {name} minus baseline", "", summary, ""]
            lines += _grid(cmp["difference"], cs, ss, signed=True) + [""]
    return "\n".join(lines)


def _heatmap(ax, values: dict, corruptions, severities, signed: bool):
    grid = np.array([[values[c][str(s)] for s in severities] for c in corruptions])
    if signed:
        limit = max(1e-9, float(np.abs(grid).max()))
        im = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    else:
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            dark = (abs(grid[i, j]) < 0.6 * limit) if signed else grid[i, j] > 55
            ax.text(j, i, f"{grid[i, j]:+.1f}" if signed else f"{grid[i, j]:.1f}", ha="center", va="center",
                    fontsize=7, color="black" if dark else "white")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(corruptions)), [c.replace("_", " ") for c in corruptions], fontsize=8)
    ax.set_xlabel("severity")
    return im


def _no_nan(value):
    """NaN (an undefined mCE) as JSON null: strict JSON readers reject NaN."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_outputs(results: dict, out_dir, comparisons: dict | None = None, baseline: dict | None = None,
                  title: str = "", note: str = "") -> dict[str, Path]:
    """Writes ``corruption.json``, ``corruption.md``, ``corruption.png`` and, with comparisons,
    ``corruption_vs_baseline.png`` (difference heatmap and per-severity means, 000 Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "corruption.json", "md": out / "corruption.md", "png": out / "corruption.png"}
    record = {"title": title, "results": results}
    if baseline is not None:
        record["baseline"] = baseline
    if comparisons:
        record["comparison"] = comparisons
    paths["json"].write_text(json.dumps(_no_nan(record), indent=2) + "\n")
    paths["md"].write_text(format_markdown(results, comparisons, title, note))
    cs, ss = results["corruptions"], results["severities"]
    names = list(results["top1"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1.5, 0.32 * len(cs) + 1.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        _heatmap(ax, results["top1"][name], cs, ss, signed=False)
        ax.set_title(f"{name}: clean {results['clean'][name]:.1f}, mean {results['mean'][name]:.1f}", fontsize=9)
    fig.suptitle(f"top-1 (%) under corruption {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    if comparisons and baseline is not None:
        paths["baseline_png"] = out / "corruption_vs_baseline.png"
        fig, axes = plt.subplots(len(comparisons), 2, figsize=(9, (0.32 * len(cs) + 1.8) * len(comparisons)),
                                 squeeze=False, gridspec_kw={"width_ratios": [1.1, 1]})
        for (left, right), (name, cmp) in zip(axes, comparisons.items()):
            _heatmap(left, cmp["difference"], cs, ss, signed=True)
            left.set_title(f"{name} minus baseline: mean {cmp['mean_difference']:+.2f}", fontsize=9)
            x = np.arange(len(ss))
            right.bar(x - 0.2, [baseline["per_severity"][name][str(s)] for s in ss], 0.4, label="baseline")
            right.bar(x + 0.2, [results["per_severity"][name][str(s)] for s in ss], 0.4, label=name)
            right.set_xticks(x, [str(s) for s in ss])
            right.set_xlabel("severity")
            right.set_ylabel("mean top-1 over corruptions (%)")
            right.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(paths["baseline_png"], dpi=120)
        plt.close(fig)
    return paths


# ---------------------------------------------------------------- ``stsmooth eval corruption``

_OPTIONS = ("which", "protocol", "source", "baseline", "corruptions", "severities", "seed", "batch_size",
            "table", "frost_images", "k", "temperature", "epochs", "lr", "weight_decay", "feature_batch_size")


def _as_list(value, name):
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise ValueError(f"{name} is empty")
    return list(value)


def _load_checkpoint(path, dotted: list[str]):
    """(config, meta, method kind, {"teacher": net, "student": net}, eval transform, device)."""
    # The command line's part, kept here so cli.py only dispatches: it reaches up into training.
    from stsmooth.methods import METHODS
    from stsmooth.training import builder, checkpoint, config

    state = checkpoint.load(path)
    cfg = config.from_dict(state["config"], dotted)
    device = builder.resolve_device(cfg.device)
    method = METHODS[cfg.method]
    model, teacher, augment = builder.build_model(cfg, method, state["meta"], device)
    model.load_state_dict(state["model"])
    teacher.load_state_dict(state["teacher"])
    nets = {"teacher": teacher.module, "student": model.student}
    return cfg, state["meta"], method.kind, nets, augment["eval"], device


def _predictors(nets: dict, kind, protocol: str, bank, transform, device, num_classes: int, opts: dict,
                log) -> dict:
    """Class scorers per network: its head (a classifier method), else a classifier fitted on clean bank features."""
    if not kind.knn:
        return dict(nets)
    from stsmooth.evaluate.features import labelled_features
    from stsmooth.evaluate.knn import knn_scores
    from stsmooth.evaluate.linear import train_linear
    from stsmooth.training.monitor import Features

    out = {}
    for name, net in nets.items():
        features = Features(net)
        f_train, y_train = labelled_features(features, bank, opts.get("feature_batch_size", 256), device, transform)
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


def main(checkpoint, overrides: list[str], out=None) -> int:
    """``stsmooth eval corruption CHECKPOINT [key=value ...] [--out DIR]``.

    Keys: ``which`` (teacher | student | both, default both), ``protocol`` (linear | knn,
    self-supervised checkpoints), ``source`` (precomputed set; default generate),
    ``baseline`` (a checkpoint to compare with, e.g. the TMA run), ``corruptions`` and
    ``severities`` (comma lists), ``seed``, ``batch_size``, ``table`` (cifar | imagenet),
    ``frost_images`` (folder), ``k``, ``temperature``, ``epochs``, ``lr``, ``weight_decay``,
    ``feature_batch_size``; dotted keys (``data.root=...``) override the run's config.
    Writes corruption.json / .md / .png (and corruption_vs_baseline.png) into ``out``
    (default: ``corruption/`` beside the checkpoint) and prints the tables.
    """
    import yaml

    from stsmooth.training import run_data

    dotted, opts = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"argument {item!r} is not of the form key=value")
        if "." in key:
            dotted.append(item)
            continue
        if key not in _OPTIONS:
            raise ValueError(f"unknown option {key!r} for eval corruption; allowed: {', '.join(_OPTIONS)}")
        opts[key] = value if key in ("source", "baseline", "frost_images") else yaml.safe_load(value)
    which = opts.get("which", "both")
    if which not in ("teacher", "student", "both"):
        raise ValueError(f"which={which!r} is not one of teacher, student, both")
    protocol = opts.get("protocol", "linear")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not one of {', '.join(PROTOCOLS)}")
    corruptions = [check_name(c) for c in _as_list(opts.get("corruptions", list(CORRUPTIONS)), "corruptions")]
    severities = [check_severity(yaml.safe_load(s) if isinstance(s, str) else s)
                  for s in _as_list(opts.get("severities", list(SEVERITIES)), "severities")]
    if "source" in opts:
        check_precomputed(opts["source"], corruptions, severities)

    def log(text):
        print(text, file=sys.stderr)

    cfg, meta, kind, nets, transform, device = _load_checkpoint(checkpoint, dotted)
    keep = ("teacher", "student") if which == "both" else (which,)
    nets = {k: nets[k] for k in keep}
    sets = run_data.load(cfg)
    test = sets.test
    num_classes = int(meta["num_classes"])
    predictors = _predictors(nets, kind, protocol, sets.bank, transform, device, num_classes, opts, log)
    bnets = {}
    if "baseline" in opts:
        bcfg, bmeta, bkind, bnets, _, _ = _load_checkpoint(opts["baseline"], dotted)
        if (bmeta["num_classes"], bmeta["image_size"], bcfg.data.name) != (num_classes, meta["image_size"], cfg.data.name):
            raise ValueError(f"baseline {opts['baseline']} was trained on {bcfg.data.name} ({bmeta['num_classes']} classes, "
                             f"{bmeta['image_size']} px) but the checkpoint on {cfg.data.name} ({num_classes} classes, "
                             f"{meta['image_size']} px)")
        bnets = {k: bnets[k] for k in keep}
        for name, p in _predictors(bnets, bkind, protocol, sets.bank, transform, device, num_classes, opts, log).items():
            predictors["baseline/" + name] = p
    all_nets = [*nets.values(), *bnets.values()]
    with eval_mode(*all_nets):
        results = corruption(predictors, test, source=opts.get("source"), corruptions=corruptions,
                             severities=severities, seed=int(opts.get("seed", 0)), batch_size=opts.get("batch_size"),
                             device=device, transform=transform, table=opts.get("table"),
                             frost_images=opts.get("frost_images"), num_classes=num_classes, progress=True)
    comparisons, baseline = None, None
    if "baseline" in opts:
        baseline = _split(results, [k for k in results["top1"] if k.startswith("baseline/")], "baseline/")
        results = _split(results, list(keep), "")
        comparisons = {name: compare(results, baseline, name) for name in keep}
    how = ("the classifier head" if not kind.knn
           else f"{'a linear probe' if protocol == 'linear' else 'kNN'} on clean training features")
    note = f"Classifier: {how}." + (f" Baseline: {opts['baseline']}." if "baseline" in opts else "")
    out_dir = Path(out) if out else Path(checkpoint).parent / "corruption"
    out_dir = out_dir.parent if out_dir.suffix == ".json" else out_dir  # --out of the other protocols is a file
    paths = write_outputs(results, out_dir, comparisons, baseline, title=str(checkpoint), note=note)
    print(format_markdown(results, comparisons, str(checkpoint), note))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def _split(results: dict, names: list[str], prefix: str) -> dict:
    """The part of ``results`` for ``names``, with ``prefix`` dropped from them."""
    out = {k: v for k, v in results.items() if not isinstance(v, dict)}
    for key in ("clean", "top1", "mean", "per_severity", "per_corruption"):
        out[key] = {n[len(prefix):]: results[key][n] for n in names}
    return out
