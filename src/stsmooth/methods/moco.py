"""MoCo v2: contrast the student's query with the teacher's key and a queue.

Momentum Contrast (He et al. 2020; v2: Chen et al. 2020) as run in 000 §4.1:
the student ("query encoder") and teacher ("key encoder") are backbone + MLP
projector; the InfoNCE loss at temperature 0.2 contrasts each query with its
own key (positive) and with 65536 keys of past batches kept in a queue
(negatives). The teacher is any smoothing rule through
:class:`~stsmooth.Teacher` (000 §4.1: STS p=0.5, m=0.999).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core.distributed import all_gather_concat
from stsmooth.core.norm import shuffle_bn_forward
from stsmooth.methods.contract import SELF_SUPERVISED, MethodModel, check_at_least
from stsmooth.models.encoder import Encoder
from stsmooth.models.heads import MLP

kind = SELF_SUPERVISED


@dataclass
class Config:
    """MoCo v2 hyper-parameters (000 §4.1, MoCo v2 paper)."""

    queue_size: int = 65536  # 000 §4.1: memory bank of 65536
    temperature: float = 0.2  # MoCo v2: 0.2
    projector_hidden: int = 2048  # MoCo v2 MLP head: 2048 (no BN)
    projector_out: int = 128  # MoCo v2: 128
    symmetric: bool = False  # MoCo v2: false (one query view, one key view)


def validate(cfg: Config) -> None:
    """One-line ValueError for a queue, temperature or head size out of range."""
    if cfg.queue_size <= 0 or cfg.temperature <= 0:
        raise ValueError(f"moco.queue_size={cfg.queue_size} and moco.temperature={cfg.temperature} must be > 0")
    check_at_least("moco", cfg, ("projector_hidden", "projector_out"), 1)


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"query": "moco", "key": "moco"}


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE loss with the positive at index 0.

    Args:
        q: (B, D) L2-normalised queries (gradient flows).
        k: (B, D) L2-normalised keys (no gradient).
        queue: (D, K) L2-normalised negative keys.
        temperature: softmax temperature tau.

    Returns:
        scalar cross-entropy, averaged over the batch.
    """
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


class MoCo(MethodModel):
    """MoCo v2 student + key queue; the teacher is passed to :meth:`loss`.

    Attributes:
        student: backbone + projector (what the Teacher copies).
        queue: (projector_out, queue_size) buffer of past normalised keys.
        queue_ptr: (1,) int64 buffer, next column to overwrite.
        shuffle_bn: run the teacher with ShuffleBN (MoCo's own baseline); set by train.py.
    """

    def __init__(self, cfg: Config, backbone: nn.Module, augment: dict[str, nn.Module]):
        super().__init__()
        self.cfg = cfg
        dim = backbone.num_features
        self.student = Encoder(backbone, MLP(dim, cfg.projector_hidden, cfg.projector_out, bn=False),
                               augment.get("normalize"))
        self.register_buffer("queue", F.normalize(torch.randn(cfg.projector_out, cfg.queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # A plain dict: augmentations hold no learnt state and stay out of checkpoints.
        self.augment = {k: augment[k] for k in augment_recipes(cfg)}
        self.shuffle_bn = False

    def _key(self, teacher, x: torch.Tensor) -> torch.Tensor:
        out = shuffle_bn_forward(teacher.module, x) if self.shuffle_bn else teacher(x)
        return F.normalize(out.float(), dim=1)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        # Keys of all ranks go in, so every rank keeps the same queue.
        keys = all_gather_concat(keys)
        size = self.queue.shape[1]
        keys = keys[-size:]
        # the pointer stays on the device: int(queue_ptr) would wait for the GPU every step
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr.add_(keys.shape[0]).remainder_(size)

    def loss(self, batch: dict, teacher, step: int) -> tuple[torch.Tensor, dict]:
        """One MoCo v2 loss on a batch; enqueues this batch's keys afterwards.

        Args:
            batch: ``{"x": uint8 (B, C, H, W)}`` (``"y"`` is ignored).
            teacher: a :class:`~stsmooth.Teacher` of ``self.student``.
            step: global step (unused).

        Returns:
            (loss, logs): scalar loss with gradient; logs of detached scalars.
        """
        x = batch["x"]
        xq = self.augment["query"](x)
        xk = self.augment["key"](x)
        q = F.normalize(self.student(xq).float(), dim=1)
        with torch.no_grad():
            k = self._key(teacher, xk)
        queue = self.queue.clone()
        loss = info_nce(q, k, queue, self.cfg.temperature)
        keys = [k]
        if self.cfg.symmetric:
            q2 = F.normalize(self.student(xk).float(), dim=1)
            with torch.no_grad():
                k2 = self._key(teacher, xq)
            loss = (loss + info_nce(q2, k2, queue, self.cfg.temperature)) * 0.5
            keys.append(k2)
        with torch.no_grad():
            # How often the positive beats every queued negative (MoCo's "acc@1").
            accuracy = ((q * k).sum(1) > (q @ queue).max(dim=1).values).float().mean() * 100
        self._enqueue(torch.cat(keys))
        return loss, {"loss": loss.detach(), "acc1": accuracy}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> MoCo:
    """Builds MoCo v2 around ``backbone`` (built with ``num_classes=0``); ``num_classes`` is unused."""
    return MoCo(cfg, backbone, augment)
