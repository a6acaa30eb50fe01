"""Top-k accuracy from class scores, shared by every classifier-style evaluation.

kNN, linear probe and fine-tuning all report top-1 and top-5 accuracy in
percent (paper 003 Tables 2 and 4, paper 000 Table 3).
"""

from __future__ import annotations

import torch


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of rows whose true label is among the ``k`` highest scores.

    Args:
        scores: (Q, C) class scores, any floating dtype, any device.
        labels: (Q,) int64 true labels in ``0..C-1``.
        ks: the k values; a k above C counts every row as a hit.

    Returns:
        ``{k: hits}`` with plain Python ints (so callers can sum over chunks).
    """
    if scores.dim() != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (Q, C) and labels (Q,); got {tuple(scores.shape)} and {tuple(labels.shape)}")
    kmax = min(max(ks), scores.shape[1])
    # One topk for all k: the top-kmax indices sorted by score contain every smaller top-k.
    top = scores.topk(kmax, dim=1).indices
    match = top == labels.to(top.device).unsqueeze(1)
    cum = match.cumsum(dim=1).clamp_(max=1)
    return {k: int(cum[:, min(k, kmax) - 1].sum()) for k in ks}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent: ``{"top1": ..., "top5": ...}``.

    Args:
        scores: (Q, C) class scores.
        labels: (Q,) int64 true labels.
        ks: the k values reported as ``"top{k}"``.
    """
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on 0 samples")
    hits = topk_hits(scores, labels, ks)
    return {f"top{k}": 100.0 * hits[k] / len(labels) for k in ks}
