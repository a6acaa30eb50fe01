"""Image retrieval on frozen features: mAP and recall over the top k (paper 003 Table 4).

Paper 003 §5.2 uses the training set as the database and the validation set
as queries, and follows Central Similarity Quantization (Yuan et al. 2020,
its ref. [49]) in scoring the top 1000 retrievals. A database item is
*relevant* to a query when it has the query's label.

Definitions, for one query with ``rel_i = 1`` when the i-th most similar
(cosine) database item is relevant, i = 1..k, k = ``min(topk, N)``:

* ``R_k = sum_i rel_i`` (relevant items retrieved within the top k),
* ``P@i = (rel_1 + ... + rel_i) / i``,
* ``AP@k = (1 / R_k) * sum_i P@i * rel_i``, and ``AP@k = 0`` when ``R_k = 0``.
  This normalises by the relevant items *retrieved* (CSQ's ``CalcTopMap``),
  not by ``min(k, #relevant)``: a query whose top k holds a few relevant items,
  all ranked first, gets AP 1.
* ``recall@k = R_k / #relevant`` (relevant items in the whole database;
  0 when there are none), ``precision@k = R_k / k``.

mAP, recall and precision are means over all queries, in percent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stsmooth.evaluate.features import check_features
from stsmooth.evaluate.knn import auto_chunk_size


def retrieval(
    db_features: torch.Tensor,
    db_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    topk: int = 1000,
    chunk_size: int | None = None,
    normalize: bool = True,
) -> dict[str, float]:
    """Cosine-ranked retrieval scored over the top ``topk`` (definitions in the module docstring).

    Args:
        db_features: (N, D) floating database features; ranking runs on their device.
        db_labels: (N,) int64 labels.
        query_features: (Q, D) floating features.
        query_labels: (Q,) int64 labels.
        topk: retrievals scored per query (clipped to N); paper 003 uses 1000.
        chunk_size: queries per similarity block; None picks
            :func:`~stsmooth.evaluate.knn.auto_chunk_size`.
        normalize: L2-normalise features (cosine similarity).

    Returns:
        ``{"mAP": %, "recall": %, "precision": %, "k": k}``.
    """
    check_features(db_features, db_labels, "database")
    check_features(query_features, query_labels, "query")
    if db_features.shape[1] != query_features.shape[1]:
        raise ValueError(f"database features have dimension {db_features.shape[1]} but query features {query_features.shape[1]}")
    if not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive int; got {topk!r}")
    device = db_features.device
    db = db_features.float()
    query = query_features.to(device).float()
    if normalize:
        db, query = F.normalize(db, dim=1), F.normalize(query, dim=1)
    db_labels, query_labels = db_labels.to(device), query_labels.to(device)
    k = min(topk, len(db))
    num_classes = max(int(db_labels.max()), int(query_labels.max())) + 1
    relevant_total = torch.bincount(db_labels, minlength=num_classes).float()
    chunk_size = auto_chunk_size(len(db), device) if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    ranks = torch.arange(1, k + 1, device=device, dtype=torch.float32)
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # AP, recall, precision
    for start in range(0, len(query), chunk_size):
        q, y = query[start : start + chunk_size], query_labels[start : start + chunk_size]
        idx = (q @ db.T).topk(k, dim=1, sorted=True).indices  # ranking order matters here
        rel = (db_labels[idx] == y.unsqueeze(1)).float()
        hits = rel.cumsum(dim=1)
        found = hits[:, -1]
        ap = (hits / ranks * rel).sum(dim=1) / found.clamp(min=1)  # 0 where nothing was found
        recall = found / relevant_total[y].clamp(min=1)
        sums += torch.stack([ap.sum(), recall.sum(), found.sum() / k]).double()
    mean = (100.0 * sums / len(query)).tolist()
    return {"mAP": mean[0], "recall": mean[1], "precision": mean[2], "k": k}
