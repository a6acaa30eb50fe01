"""Weighted cosine k-nearest-neighbour classification of frozen features.

The protocol of InstDisc (Wu et al. 2018), used by paper 003 §5 (k = 20,
Table 4 and Fig. 3): features are L2-normalised, the k training features most
similar (cosine) to a query vote for their labels with weight
``exp(similarity / T)``, T = 0.07, and classes are ranked by summed weight.

The search is exact and runs as chunked matrix products on the features'
device: for each chunk of queries one ``(chunk, N)`` similarity block is
computed into a reused buffer and reduced by ``torch.topk`` straight away, so
memory stays at ``chunk * N`` floats and the cost stays close to that of the
single ``queries @ train.T`` product any exact search needs
(``benchmarks/knn.py`` measures the ratio).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stsmooth.evaluate.features import check_features
from stsmooth.evaluate.metrics import topk_hits

# Similarity block size in elements (queries * train). On 2 CPU cores
# (benchmarks/knn.py --sweep, 50k x 512 train) blocks of 1k-2k queries cost
# ~1.10-1.12x the bare product in CPU time, 512 queries ~1.18x, 128 ~1.6x:
# 2^26 floats (256 MiB, 1342 queries there) is on the plateau. On a GPU a
# larger block keeps the device busy.
CPU_BLOCK = 1 << 26
GPU_BLOCK = 1 << 28


def auto_chunk_size(num_train: int, device: torch.device) -> int:
    """Queries per chunk so that one similarity block holds about CPU_BLOCK / GPU_BLOCK floats."""
    block = GPU_BLOCK if torch.device(device).type != "cpu" else CPU_BLOCK
    return max(1, block // max(1, num_train))


def _prepare(train_features, train_labels, query_features, k, temperature, num_classes, normalize):
    check_features(train_features, train_labels, "train")
    check_features(query_features, None, "query")
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(f"train features have dimension {train_features.shape[1]} but query features {query_features.shape[1]}")
    if not isinstance(k, int) or not 1 <= k <= len(train_features):
        raise ValueError(f"k must be an int in 1..{len(train_features)} (the number of training features); got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    device = train_features.device
    labels = train_labels.to(device)
    seen = int(labels.max()) + 1
    if num_classes is None:
        num_classes = seen
    elif seen > num_classes:
        raise ValueError(f"train labels go up to {seen - 1} but num_classes is {num_classes}")
    train = train_features.float()
    query = query_features.to(device).float()
    if normalize:
        train, query = F.normalize(train, dim=1), F.normalize(query, dim=1)
    return train, labels, query, num_classes


def _chunks(train, labels, query, k, temperature, num_classes, chunk_size):
    """Yields (start, class scores (c, num_classes)) per chunk of queries."""
    if chunk_size is None:
        chunk_size = auto_chunk_size(len(train), train.device)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    chunk_size = min(chunk_size, len(query))
    train_t = train.T  # a view: BLAS reads it transposed, no copy
    sim = torch.empty(chunk_size, len(train), device=train.device, dtype=train.dtype)
    inv_t = 1.0 / temperature
    for start in range(0, len(query), chunk_size):
        q = query[start : start + chunk_size]
        block = sim[: len(q)]
        torch.mm(q, train_t, out=block)
        top_sim, top_idx = block.topk(k, dim=1, sorted=False)  # the vote ignores order
        weights = top_sim.mul_(inv_t).exp_()
        scores = torch.zeros(len(q), num_classes, device=train.device, dtype=weights.dtype)
        scores.scatter_add_(1, labels[top_idx], weights)
        yield start, scores


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Class scores of the weighted kNN vote for every query.

    Args:
        train_features: (N, D) floating features; their device is where the search runs.
        train_labels: (N,) int64 labels in ``0..num_classes-1``.
        query_features: (Q, D) floating features.
        k: neighbours per query (1..N).
        temperature: T of the vote weight ``exp(cos / T)``.
        num_classes: C; default ``max(train_labels) + 1``.
        chunk_size: queries per similarity block; None picks :func:`auto_chunk_size`.
        normalize: L2-normalise both feature sets first (cosine similarity).

    Returns:
        (Q, C) float32 scores: ``scores[q, c] = sum over the k neighbours n of q
        with label c of exp(cos(q, n) / T)``.
    """
    train, labels, query, num_classes = _prepare(train_features, train_labels, query_features, k, temperature, num_classes, normalize)
    out = torch.empty(len(query), num_classes, device=train.device)
    for start, scores in _chunks(train, labels, query, k, temperature, num_classes, chunk_size):
        out[start : start + len(scores)] = scores
    return out


def knn(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
    normalize: bool = True,
) -> dict[str, float]:
    """Weighted cosine kNN accuracy (InstDisc protocol, paper 003 §5: k = 20, T = 0.07).

    Args:
        train_features: (N, D) floating features; the search runs on their device.
        train_labels: (N,) int64 labels.
        query_features: (Q, D) floating features.
        query_labels: (Q,) int64 labels.
        k, temperature, num_classes, chunk_size, normalize: as in :func:`knn_scores`.

    Returns:
        ``{"top1": %, "top5": %}``: how often the true class has the highest
        (among the five highest) summed vote weight. Ties between classes are
        broken by ``torch.topk``.
    """
    check_features(query_features, query_labels, "query")
    train, labels, query, num_classes = _prepare(train_features, train_labels, query_features, k, temperature, num_classes, normalize)
    if int(query_labels.max()) >= num_classes:
        raise ValueError(f"query labels go up to {int(query_labels.max())} but there are {num_classes} classes")
    query_labels = query_labels.to(train.device)
    hits = {1: 0, 5: 0}
    for start, scores in _chunks(train, labels, query, k, temperature, num_classes, chunk_size):
        h = topk_hits(scores, query_labels[start : start + len(scores)], (1, 5))
        hits = {kk: hits[kk] + h[kk] for kk in hits}
    return {"top1": 100.0 * hits[1] / len(query), "top5": 100.0 * hits[5] / len(query)}
