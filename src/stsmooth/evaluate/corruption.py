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

Which classifier gives the top-1 (``stsmooth eval corruption CKPT``, run by
:func:`stsmooth.training.checkpoint_eval.evaluate_corruption`):

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
from stsmooth.data.folder import FolderSet
from stsmooth.data.imageset import ImageSet, to_float
from stsmooth.data.registry import loader_for
from stsmooth.evaluate.corruption_ops import (
    CORRUPTIONS,
    SEVERITIES,
    check_name,
    check_severity,
    corrupt,
    table_for,
)

__all__ = ["CORRUPTIONS", "SEVERITIES", "check_precomputed", "compare", "corrupt", "corruption", "format_markdown",
           "imagenet_c_set", "read_cifar_c", "split_results", "table_for", "write_outputs"]

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


def _batches(images_set: ImageSet | FolderSet, batch_size: int, device):
    """(uint8 images, int64 labels) batches of an ImageSet or a FolderSet, in order, on ``device``."""
    workers = 0 if len(images_set) <= batch_size else None  # no decoding processes for one batch
    yield from loader_for(images_set, batch_size, shuffle=False, drop_last=False, device=device, num_workers=workers)


def _cell_seed(seed: int, batch: int, corruption: str, severity: int) -> int:
    return int(np.random.SeedSequence([seed, batch, CORRUPTIONS.index(corruption), severity]).generate_state(1)[0])


class _Tally:
    """Correct top-1 predictions per (predictor, cell)."""

    def __init__(self, predictors: Mapping[str, Callable]):
        self.predictors = predictors
        self.hits: dict = {}
        self.count: dict = {}

    @torch.inference_mode()  # no autograd bookkeeping at all: only hit counts leave this method
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
            Their forward passes are most of the time: pass networks through
            :func:`~stsmooth.evaluate.features.inference_copy` (as ``stsmooth eval corruption`` does).
        test: ImageSet or FolderSet, the clean test split (labels 0..K-1).
        source: None to generate the corruptions from ``test``; else the folder of a
            precomputed set (see the module docstring).
        corruptions: names among :data:`CORRUPTIONS` (default all 15).
        severities: among 1..5 (default all).
        seed: seed of the generated corruptions.
        batch_size: images per batch; default ~8M pixel values per batch.
        device: where images are corrupted and classified (default CPU).
        transform: clean uint8 batch -> float in [0, 1] at the model's size (the
            evaluation recipe); applied before corrupting. Default :func:`~stsmooth.data.imageset.to_float`.
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
    transform = transform if transform is not None else to_float
    size = size if size is not None else getattr(transform, "size", None)
    first = test.images[:1] if isinstance(test, ImageSet) else test[0][0][None]
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
                        images = fit_to_size(to_float(images), size)
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


def split_results(results: dict, names: list[str], prefix: str = "") -> dict:
    """The part of :func:`corruption`'s ``results`` for the predictors ``names``, with ``prefix`` dropped from them.

    E.g. ``split_results(results, ["baseline/teacher"], "baseline/")`` is the baseline's
    results under the name ``teacher``, ready for :func:`compare`.
    """
    out = {k: v for k, v in results.items() if not isinstance(v, dict)}
    for key in ("clean", "top1", "mean", "per_severity", "per_corruption"):
        out[key] = {n[len(prefix):]: results[key][n] for n in names}
    return out
