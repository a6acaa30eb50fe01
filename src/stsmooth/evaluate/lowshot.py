"""Low-shot classification on frozen features: k labelled images per class (paper 003 Table 5).

Paper 003 §5.2 trains a linear classifier on k = 1, 2, 4, 8, 16 images per
class, searches its cost parameter in ``C ∈ 2^[-5, 5]`` and averages 5 draws
of the k-shot sets. Here the linear classifier is an L2-regularised
multinomial logistic regression (the same objective as scikit-learn's
``LogisticRegression(C=C)``) fitted with full-batch L-BFGS in torch, so it
runs on the features' device.

Protocol, made explicit:

1. Once per call, ``val_per_class`` images per class are drawn from the
   *training* set as held-out validation data; the test set never influences
   any choice.
2. Per draw, every class's remaining training images are shuffled; the
   k-shot set is the first k of them (so the k-shot sets of one draw are
   nested, which keeps the curve over k from jumping between unrelated samples).
3. Per (draw, k), one classifier per cost is fitted on the k-shot set (warm
   started from the previous cost); the cost with the best validation top-1
   (ties: the stronger regularisation) is kept and scored on the test set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stsmooth.evaluate.features import check_features

DEFAULT_COSTS = tuple(2.0**e for e in range(-5, 6))


def fit_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cost: float = 1.0,
    max_iter: int = 100,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with an L2 penalty on the weights (not the bias).

    Minimises ``sum_i CE(W x_i + b, y_i) + ||W||^2 / (2 C)`` (scikit-learn's
    ``LogisticRegression(C=cost)`` objective), scaled by ``1/n`` for L-BFGS.

    Args:
        features: (n, D) float features.
        labels: (n,) int64 labels in ``0..num_classes-1``.
        num_classes: K.
        cost: C > 0; larger means weaker regularisation.
        max_iter: L-BFGS iterations.
        init: warm start ``(W (K, D), b (K,))``.

    Returns:
        ``(W (K, D), b (K,))``, detached.
    """
    if not cost > 0:
        raise ValueError(f"cost must be > 0; got {cost!r}")
    n, d = features.shape
    if init is None:
        w = torch.zeros(num_classes, d, device=features.device, dtype=features.dtype)
        b = torch.zeros(num_classes, device=features.device, dtype=features.dtype)
    else:
        w, b = init[0].detach().clone(), init[1].detach().clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    penalty = 0.5 / (cost * n)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(features @ w.T + b, labels) + penalty * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _accuracy(w: torch.Tensor, b: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float(((features @ w.T + b).argmax(dim=1) == labels).float().mean())


def lowshot(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    shots=(1, 2, 4, 8, 16),
    draws: int = 5,
    seed: int = 0,
    costs=DEFAULT_COSTS,
    val_per_class: int = 10,
    normalize: bool = True,
    max_iter: int = 100,
) -> dict[int, dict]:
    """k-shot linear classification accuracy, mean ± std over draws (protocol in the module docstring).

    Args:
        train_features: (N, D) float features (fitting runs on their device).
        train_labels: (N,) int64 labels; every class present needs at least
            ``max(shots) + val_per_class`` images.
        test_features: (M, D) float features.
        test_labels: (M,) int64 labels (a test class absent from training counts as an error).
        shots: the k values.
        draws: k-shot sets drawn per k (paper 003: 5).
        seed: seeds the validation split and the draws.
        costs: the grid of inverse regularisation strengths C (paper 003: 2^-5..2^5).
        val_per_class: held-out training images per class used to choose C.
        normalize: L2-normalise the features first.
        max_iter: L-BFGS iterations per fit.

    Returns:
        ``{k: {"top1": mean %, "std": sample std % (0 for one draw),
        "runs": [top-1 % per draw], "cost": [chosen C per draw]}}``, one entry per k.
    """
    check_features(train_features, train_labels, "train")
    check_features(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"train features have dimension {train_features.shape[1]} but test features {test_features.shape[1]}")
    shots = tuple(int(k) for k in shots)
    if not shots or min(shots) < 1:
        raise ValueError(f"shots must be positive ints; got {shots!r}")
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int; got {draws!r}")
    costs = tuple(sorted(float(c) for c in costs))
    if not costs or costs[0] <= 0:
        raise ValueError(f"costs must be a non-empty list of positive numbers; got {costs!r}")
    if not isinstance(val_per_class, int) or val_per_class < 1:
        raise ValueError(f"val_per_class must be a positive int; got {val_per_class!r}")
    device = train_features.device
    train = train_features.float()
    test = test_features.to(device).float()
    if normalize:
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    # Classes are renumbered 0..K-1 over those present in training, so absent ones get no logit.
    train_labels_cpu = train_labels.cpu()
    classes = torch.unique(train_labels_cpu)
    remap = torch.full((int(max(train_labels_cpu.max(), test_labels.max())) + 1,), -1, dtype=torch.int64)
    remap[classes] = torch.arange(len(classes))
    y_train = remap[train_labels_cpu]
    y_test = remap[test_labels.cpu()].to(device)  # -1 for a class never trained: always wrong
    need = max(shots) + val_per_class
    g = torch.Generator().manual_seed(seed)
    per_class = []
    for c in range(len(classes)):
        idx = (y_train == c).nonzero().flatten()
        if len(idx) < need:
            raise ValueError(
                f"class {int(classes[c])} has {len(idx)} training images; low-shot needs {need} (max shot {max(shots)} + val_per_class {val_per_class})"
            )
        per_class.append(idx[torch.randperm(len(idx), generator=g)])
    val_idx = torch.cat([p[:val_per_class] for p in per_class])
    pools = [p[val_per_class:] for p in per_class]
    x_val, y_val = train[val_idx.to(device)], y_train[val_idx].to(device)

    results = {k: {"runs": [], "cost": []} for k in shots}
    for _ in range(draws):
        orders = [p[torch.randperm(len(p), generator=g)] for p in pools]
        for k in shots:
            idx = torch.cat([o[:k] for o in orders])
            x, y = train[idx.to(device)], y_train[idx].to(device)
            best, params = None, None
            for cost in costs:  # ascending C: warm start from the more regularised solution
                params = fit_logistic(x, y, len(classes), cost, max_iter, init=params)
                acc = _accuracy(*params, x_val, y_val)
                if best is None or acc > best[0]:
                    best = (acc, cost, params)
            results[k]["runs"].append(_accuracy(*best[2], test, y_test))
            results[k]["cost"].append(best[1])
    for k, r in results.items():
        runs = torch.tensor(r["runs"], dtype=torch.float64)
        r["top1"] = float(runs.mean())
        r["std"] = float(runs.std()) if len(runs) > 1 else 0.0
    return {k: {"top1": r["top1"], "std": r["std"], "runs": r["runs"], "cost": r["cost"]} for k, r in results.items()}
