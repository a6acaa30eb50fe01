"""Apply a different op to each image of a batch without a per-sample loop.

RandAugment and colour jitter pick, per image, which op runs at each stage.
Rather than looping over images, images are grouped by their op (one sort),
each op runs once on its group, and the results are scattered back. That is
one host sync per stage and at most ``len(ops)`` kernel launches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["apply_per_sample"]

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def apply_per_sample(
    x: torch.Tensor, choice: torch.Tensor, ops: Sequence[Op | None], params: torch.Tensor
) -> torch.Tensor:
    """Run ``ops[choice[i]]`` on image ``i`` for every ``i``.

    Args:
        x: ``(B, C, H, W)``.
        choice: ``(B,)`` integer op index per image, in ``[0, len(ops))``.
        ops: callables ``op(images (n, C, H, W), params (n, ...)) -> (n, C, H, W)``;
            ``None`` leaves its images unchanged.
        params: ``(B, ...)`` per-image parameters, sliced with the images.

    Returns:
        ``(B, C, H, W)``, a new tensor.
    """
    counts = torch.bincount(choice, minlength=len(ops)).tolist()  # the one host sync
    order = torch.argsort(choice, stable=True)
    out = x.clone()
    start = 0
    for op, n in zip(ops, counts):
        if n and op is not None:
            idx = order[start : start + n]
            out[idx] = op(x[idx], params[idx]).to(out.dtype)
        start += n
    return out
