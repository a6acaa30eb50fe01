"""Apply a different op to each image of a batch without a per-sample loop.

RandAugment and colour jitter pick, per image, which op runs at each stage.
Rather than looping over images, images are grouped by their op (one sort),
each op runs once on its group, and the results are scattered back: at most
``len(ops)`` kernel launches.

The group sizes decide the slice shapes, so they must be known on the host.
Reading them back from the device would make every stage wait for the GPU
(issue 12 item 4), so the op choices are drawn on the host instead (torch's
global CPU generator, which ``torch.manual_seed`` seeds and checkpoints save):
the grouping is computed on CPU tensors and only the sorted image order moves to
the device, as one non-blocking copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["apply_per_sample", "to_device"]

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device`` without making the host wait for the device.

    A plain copy from pageable memory synchronises the CUDA stream; from pinned
    memory with ``non_blocking`` it is queued like a kernel.
    """
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def apply_per_sample(
    x: torch.Tensor, choice: torch.Tensor, ops: Sequence[Op | None], params: torch.Tensor
) -> torch.Tensor:
    """Run ``ops[choice[i]]`` on image ``i`` for every ``i``, with no device-to-host sync.

    Args:
        x: ``(B, C, H, W)`` on any device.
        choice: ``(B,)`` integer op index per image, in ``[0, len(ops))``, on the CPU
            (drawn on the host, see the module docstring).
        ops: callables ``op(images (n, C, H, W), params (n, ...)) -> (n, C, H, W)``;
            ``None`` leaves its images unchanged.
        params: ``(B, ...)`` per-image parameters on ``x``'s device, sliced with the images.

    Returns:
        ``(B, C, H, W)``, a new tensor.

    Raises:
        ValueError: ``choice`` is not on the CPU.
    """
    if choice.device.type != "cpu":
        raise ValueError(f"choice must be a CPU tensor (images are grouped on the host), got device {choice.device}")
    ends = torch.bincount(choice, minlength=len(ops)).cumsum(0)[:-1]
    # tensor_split reads the CPU boundaries itself; the device only receives the order
    groups = to_device(torch.argsort(choice, stable=True), x.device).tensor_split(ends)
    out = x.clone()
    for op, idx in zip(ops, groups):
        if op is not None and len(idx):
            out[idx] = op(x[idx], params[idx]).to(out.dtype)
    return out
