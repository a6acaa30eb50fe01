"""Semi-supervised labeled/unlabeled splits: class-balanced, seeded, saved as JSON.

Protocol (FixMatch / USB; paper 000 §4.5 uses CIFAR-10/100 with 2, 4, 25
and 400/100 labels per class; paper 004 §3.1 SVHN and CIFAR-10): a fixed
number of labels per class, or a fraction of each class (ImageNet 1 % / 10 %,
paper 003 §5.3), drawn from a seed; seeds 0,
1, 2 give the three splits whose results are averaged. The indices are saved
with the run so that it can be resumed and audited.

The draw is a ``numpy.random.RandomState(seed)`` permutation (its stream is
frozen by NumPy's compatibility policy, NEP 19); each class takes the first
``k`` of its images in that permutation. Images labeled ``-1`` are never
drawn. Datasets with their own unlabeled split (STL-10 "unlabeled", SVHN
"extra") name it through :func:`unlabeled_split_name`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

_OWN_UNLABELED = {"stl10": "unlabeled", "svhn": "extra"}


def unlabeled_split_name(name: str) -> str | None:
    """The dataset's own unlabeled split ("unlabeled" for STL-10, "extra" for SVHN), else None."""
    return _OWN_UNLABELED.get(name.lower())


def _labels_array(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers of shape (N,); got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


UNLABELED = ("rest", "all")  # which images the unlabeled set holds (split_labeled's ``unlabeled``)


def split_labeled(labels, per_class: int | None = None, fraction: float | None = None, seed: int = 0,
                  classes: list[str] | None = None, unlabeled: str = "rest") -> tuple[torch.Tensor, torch.Tensor]:
    """Draws a class-balanced labeled subset.

    Args:
        labels: int (N,) class ids; -1 entries are never labeled.
        per_class: number of labeled images per class (exactly one of
            ``per_class`` / ``fraction``).
        fraction: share of each class, in (0, 1]: class c gives
            ``max(1, round(fraction * n_c))`` images (0.01 = the 1 % split).
        seed: the draw; equal seeds give equal splits.
        classes: names used in error messages (optional).
        unlabeled: "rest" (every image not drawn) or "all" (every image, as
            FixMatch feeds labeled images to the unlabeled loss too).

    Returns:
        (labeled_idx, unlabeled_idx): sorted int64 tensors of indices.

    Raises:
        ValueError: a class has fewer images than asked (naming it and counts),
            or a bad ``per_class`` / ``fraction`` / ``unlabeled``.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError(f"give exactly one of per_class ({per_class}) and fraction ({fraction})")
    if per_class is not None and (isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1):
        raise ValueError(f"per_class must be a positive integer; got {per_class!r}")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r} (use 0.01 for 1 %)")
    if unlabeled not in UNLABELED:
        raise ValueError(f"unlabeled={unlabeled!r}; allowed: {', '.join(UNLABELED)}")
    y = _labels_array(labels)
    if y.size and y.min() < -1:
        raise ValueError(f"labels must be >= -1; got {int(y.min())}")
    perm = np.random.RandomState(seed).permutation(len(y))
    y_perm = y[perm]
    present = np.unique(y[y >= 0])
    if present.size == 0:
        raise ValueError("no labeled images to draw from (all labels are -1)")
    picked = []
    for c in present:
        members = perm[y_perm == c]
        k = int(per_class) if per_class is not None else max(1, int(round(fraction * len(members))))
        if len(members) < k:
            name = classes[c] if classes is not None and c < len(classes) else str(c)
            raise ValueError(f"class {name!r} (label {c}) has {len(members)} images but {k} labels per class were asked for")
        picked.append(members[:k])
    labeled = np.sort(np.concatenate(picked))
    if unlabeled == "all":
        rest = np.arange(len(y))
    else:
        mask = np.ones(len(y), dtype=bool)
        mask[labeled] = False
        rest = np.flatnonzero(mask)
    return torch.from_numpy(labeled.astype(np.int64)), torch.from_numpy(rest.astype(np.int64))


def save_split(path, labeled_idx, unlabeled_idx, **meta) -> Path:
    """Writes the split as JSON ``{"labeled": [...], "unlabeled": [...], "meta": {...}}`` atomically.

    ``meta`` holds anything that identifies the split (dataset, seed,
    per_class/fraction, num_samples); it must be JSON-serialisable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "labeled": [int(i) for i in torch.as_tensor(labeled_idx).tolist()],
        "unlabeled": [int(i) for i in torch.as_tensor(unlabeled_idx).tolist()],
        "meta": meta,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_split(path, num_samples: int | None = None, return_meta: bool = False):
    """Reads a split written by :func:`save_split`.

    Args:
        path: JSON file.
        num_samples: when given, every index must be below it.
        return_meta: also return the ``meta`` dict.

    Returns:
        (labeled_idx, unlabeled_idx) int64 tensors, plus ``meta`` if asked.

    Raises:
        ValueError: not a split file, or an index out of range (naming the file).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON split file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("labeled"), list) or not isinstance(doc.get("unlabeled"), list):
        raise ValueError(f"{path}: a split file needs lists 'labeled' and 'unlabeled'")
    out = []
    for key in ("labeled", "unlabeled"):
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in doc[key]):
            raise ValueError(f"{path}: '{key}' must hold non-negative integers")
        t = torch.tensor(doc[key], dtype=torch.int64)
        if num_samples is not None and t.numel() and int(t.max()) >= num_samples:
            raise ValueError(f"{path}: '{key}' index {int(t.max())} is out of range for {num_samples} samples")
        out.append(t)
    return (out[0], out[1], doc.get("meta", {})) if return_meta else (out[0], out[1])
