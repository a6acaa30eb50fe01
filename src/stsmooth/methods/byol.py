"""BYOL: regress the teacher's projection of one view from the other view.

Bootstrap Your Own Latent (Grill et al. 2020) as run in 000 §4.1: the student
("online network") is backbone + projector, followed by a predictor that the
teacher ("target network") lacks; the loss is the symmetrised normalised-MSE
``2 - 2 cos(q, z')`` between the student's prediction of one view and the
teacher's projection of the other view. The teacher is any smoothing rule
(TMA, SE, STS, EMAN) through :class:`~stsmooth.Teacher`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core.norm import shuffle_bn_forward
from stsmooth.methods.contract import SELF_SUPERVISED, MethodModel, check_at_least
from stsmooth.models.encoder import Encoder
from stsmooth.models.heads import MLP

kind = SELF_SUPERVISED


@dataclass
class Config:
    """BYOL hyper-parameters (BYOL paper §3.3, used by 000 §4.1)."""

    projector_hidden: int = 4096  # BYOL: 4096 (BN + ReLU in the hidden layer)
    projector_out: int = 256  # BYOL: 256
    predictor_hidden: int = 4096  # BYOL: 4096
    symmetric: bool = True  # BYOL: loss + loss with the views swapped


def validate(cfg: Config) -> None:
    """One-line ValueError for a head size below 1."""
    check_at_least("byol", cfg, ("projector_hidden", "projector_out", "predictor_hidden"), 1)


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"view1": "byol1", "view2": "byol2"}


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL Eq. 2: ``2 - 2 cos(q, z)``, averaged over the batch.

    Args:
        prediction: (B, D) student predictions.
        target: (B, D) teacher projections (no gradient).

    Returns:
        scalar tensor in [0, 4].
    """
    p = F.normalize(prediction.float(), dim=1)
    z = F.normalize(target.float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


class BYOL(MethodModel):
    """BYOL student + predictor; the teacher is passed to :meth:`loss`.

    Attributes:
        student: backbone + projector (what the Teacher copies).
        predictor: projection -> prediction (student only).
        augment: ``{"view1", "view2"}`` batch augmentations (uint8 -> [0, 1] float).
        shuffle_bn: run the teacher with ShuffleBN (003 Table 1 baseline); set by train.py.
    """

    def __init__(self, cfg: Config, backbone: nn.Module, augment: dict[str, nn.Module]):
        super().__init__()
        dim = backbone.num_features
        self.cfg = cfg
        self.student = Encoder(backbone, MLP(dim, cfg.projector_hidden, cfg.projector_out, bn=True),
                               augment.get("normalize"))
        self.predictor = MLP(cfg.projector_out, cfg.predictor_hidden, cfg.projector_out, bn=True)
        # A plain dict: augmentations hold no learnt state and stay out of checkpoints.
        self.augment = {k: augment[k] for k in augment_recipes(cfg)}
        self.shuffle_bn = False

    def _target(self, teacher, x: torch.Tensor) -> torch.Tensor:
        if self.shuffle_bn:
            return shuffle_bn_forward(teacher.module, x)
        return teacher(x)

    def loss(self, batch: dict, teacher, step: int) -> tuple[torch.Tensor, dict]:
        """One BYOL loss on a batch.

        Args:
            batch: ``{"x": uint8 (B, C, H, W)}`` (``"y"`` is ignored).
            teacher: a :class:`~stsmooth.Teacher` of ``self.student``.
            step: global step (unused; BYOL has no loss schedule).

        Returns:
            (loss, logs): scalar loss with gradient; logs of detached scalars.
        """
        x = batch["x"]
        v1 = self.augment["view1"](x)
        v2 = self.augment["view2"](x)
        q1 = self.predictor(self.student(v1))
        with torch.no_grad():
            z2 = self._target(teacher, v2)
        loss = regression_loss(q1, z2)
        if self.cfg.symmetric:
            q2 = self.predictor(self.student(v2))
            with torch.no_grad():
                z1 = self._target(teacher, v1)
            loss = loss + regression_loss(q2, z1)
        return loss, {"loss": loss.detach()}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> BYOL:
    """Builds BYOL around ``backbone`` (built with ``num_classes=0``); ``num_classes`` is unused."""
    return BYOL(cfg, backbone, augment)
