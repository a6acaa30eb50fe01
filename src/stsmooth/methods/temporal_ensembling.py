"""Temporal Ensembling (Laine & Aila 2017, §2.2): consistency with a per-image ensemble of past predictions.

004's main baseline. Each training image ``i`` keeps an exponential moving
average ``Z_i`` of the network's softmax predictions on it, one term per time
the image was seen (once per epoch):

    Z_i <- alpha Z_i + (1 - alpha) z_i,        target  z~_i = Z_i / (1 - alpha^t_i)

with ``t_i`` the number of predictions accumulated (the division removes the
start-up bias of ``Z = 0``). The loss of a minibatch B is

    -1/|B| sum_{i in B, labeled} log z_i[y_i]  +  w(t) 1/(C|B|) sum_{i in B} ||z_i - z~_i||^2

with ``w(t) = w * exp(-5 (1 - t)^2)`` ramped up over ``rampup_steps``. Unlike the
Π-model, every image is evaluated once per step: the target comes from earlier
epochs, not from a second pass.

How the authors' release does it (s-laine/tempens ``train.py``, ``config.py``),
and how this file maps it:

* the predictions ``z_i`` gathered during an epoch are those of the training
  forward pass (noise, dropout, augmentation on), before the step's update;
  ``Z`` and the targets are updated at the end of the epoch
  (``ensemble_prediction``, ``training_targets``). Here ``Z_i`` is updated
  right after image ``i`` has used its target, which is the same thing when
  every image is seen once per epoch, and stays exact (per-image ``t_i``) when
  a pass drops a few images (``drop_last``);
* in the first epoch there is no target; the release sets the weight to 0,
  here an image without a prediction yet (``t_i = 0``) is left out of the sum
  (its squared error counts 0, the mean is still over all of B);
* ``alpha`` = ``prediction_decay`` = 0.6;
* the release multiplies its ``unsup_weight_max`` (30 for Temporal
  Ensembling, 100 for Π) by labels / images M/N, the labeled share of its
  minibatches, so consistency / cross-entropy stays ``w_max`` × MSE / CE. Here
  the labeled share of a minibatch is 1 / (1 + mu), so the same balance is
  ``consistency_weight = w_max / (1 + mu)``: 30 / 4 = 7.5 at the default mu = 3;
* the release's minibatches mix labeled and unlabeled images of one set. Here
  the labeled images come as ``x_l`` (cross-entropy) and the ensemble covers
  the unlabeled loader's images ``x_u`` by their indices ``i_u`` into the
  unlabeled set; with ``data.unlabeled=all`` (the default) that set holds
  every training image, labeled ones included, each seen once per epoch;
  the cross-entropy is summed over ``x_l`` and divided by the whole minibatch
  (|x_l| + |x_u|), as in the release (``mean(CE * mask)``) and in 004.

Under DDP the ranks' predictions and indices are gathered so every rank
holds the same ensemble. The ensemble is a buffer of this module (N × C floats
for the largest index seen), so it is saved in checkpoints and a resumed run
continues with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from stsmooth.core.distributed import all_gather_concat
from stsmooth.methods.contract import SEMI_SUPERVISED, MethodModel
from stsmooth.methods.mean_teacher import class_loss, consistency_weight
from stsmooth.methods.supervised import Classifier, add_noise, require_augment

if TYPE_CHECKING:
    from stsmooth.core.teacher import Teacher

kind = SEMI_SUPERVISED


@dataclass
class Config:
    """Temporal Ensembling hyper-parameters (Laine & Aila 2017 §2.2, §3; s-laine/tempens config.py)."""

    alpha: float = 0.6  # ensemble momentum (release: prediction_decay = 0.6)
    consistency_weight: float = 7.5  # max weight: the release's unsup_weight_max 30 / (1 + mu), see the module docstring
    rampup_steps: int = 40000  # sigmoid ramp-up: the release's 80 epochs (of 500 steps of 100 images on CIFAR-10)
    input_noise: float = 0.0  # extra Gaussian noise on [0, 1] inputs; the "mean_teacher" recipe already adds sigma=0.15
    mu: int = 3  # unlabeled per labeled image in a batch
    augment: str = "mean_teacher"  # translations (+ flips) and Gaussian noise, as the release (augment_translation = 2)


def validate(cfg: Config) -> None:
    """One-line ValueError for an out-of-range Temporal Ensembling setting."""
    if not 0.0 <= cfg.alpha < 1.0:
        raise ValueError(f"temporal_ensembling alpha={cfg.alpha!r} must lie in [0, 1) (1 would never move Z)")
    for name in ("consistency_weight", "input_noise"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"temporal_ensembling {name}={getattr(cfg, name)!r} must be >= 0")
    if int(cfg.rampup_steps) < 0:
        raise ValueError(f"temporal_ensembling rampup_steps={cfg.rampup_steps!r} must be >= 0")
    if int(cfg.mu) < 1:
        raise ValueError(f"temporal_ensembling mu={cfg.mu!r} must be >= 1 (the ensemble is over the unlabeled images)")


@torch.no_grad()
def update_ensemble(ensemble: torch.Tensor, count: torch.Tensor, idx: torch.Tensor, probs: torch.Tensor,
                    alpha: float) -> None:
    """``Z_i <- alpha Z_i + (1 - alpha) z_i`` and ``t_i <- t_i + 1`` for the images ``idx``, in place.

    Args:
        ensemble: (N, C) float ``Z``.
        count: (N,) int64 ``t``, predictions accumulated per image.
        idx: (B,) int64 distinct image indices.
        probs: (B, C) softmax predictions ``z`` of those images.
        alpha: ensemble momentum in [0, 1).
    """
    ensemble[idx] = alpha * ensemble[idx] + (1.0 - alpha) * probs.to(ensemble.dtype)
    count[idx] += 1


def ensemble_targets(ensemble: torch.Tensor, count: torch.Tensor, idx: torch.Tensor,
                     alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias-corrected targets ``Z_i / (1 - alpha^t_i)`` of the images ``idx``.

    Args:
        ensemble: (N, C) float ``Z``.
        count: (N,) int64 ``t``.
        idx: (B,) int64 image indices.
        alpha: ensemble momentum in [0, 1).

    Returns:
        (targets (B, C), has_target (B,) bool): rows with ``t_i = 0`` have no
        prediction yet; their target is 0 and ``has_target`` False.
    """
    t = count[idx]
    has = t > 0
    # t = 0 would divide by 1 - alpha^0 = 0: those rows are zeros and masked anyway
    correction = 1.0 - alpha ** t.clamp_min(1).to(ensemble.dtype)
    return ensemble[idx] / correction[:, None] * has[:, None], has


class TemporalEnsembling(MethodModel):
    """Temporal Ensembling around a :class:`Classifier`.

    Args:
        cfg: :class:`Config`.
        student: the classifier being trained (the teacher the loop keeps is for evaluation only).
        augment: {"view": module mapping (B, C, H, W) images to floats in [0, 1]}.
    """

    def __init__(self, cfg: Config, student: Classifier, augment: dict[str, nn.Module]):
        super().__init__()
        require_augment(augment, ("view",), "temporal_ensembling")
        self.cfg = cfg
        self.student = student
        self.augment = nn.ModuleDict({"view": augment["view"]})
        # Grown to the largest image index seen (the method is built before any data is read).
        self.register_buffer("ensemble", torch.zeros(0, student.num_classes))
        self.register_buffer("ensemble_count", torch.zeros(0, dtype=torch.int64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint's ensemble has the size of its set: take that size before the copy.
        for name in ("ensemble", "ensemble_count"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.zeros_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _grow(self, size: int) -> None:
        n = self.ensemble.shape[0]
        if size > n:
            self.ensemble = torch.cat([self.ensemble, self.ensemble.new_zeros(size - n, self.ensemble.shape[1])])
            self.ensemble_count = torch.cat([self.ensemble_count, self.ensemble_count.new_zeros(size - n)])

    def loss(self, batch: dict, teacher: "Teacher | None", step: int) -> tuple[torch.Tensor, dict]:
        """Cross-entropy on ``x_l`` + ramped consistency of ``x_u`` with its ensemble targets.

        Args:
            batch: {"x_l": (B, C, H, W) uint8, "y_l": (B,) int64, "x_u": (mu*B, C, H, W) uint8,
                "i_u": (mu*B,) int64 indices of ``x_u`` in the unlabeled set}.
            teacher: unused (the loop keeps it for evaluation).
            step: global step, for the consistency ramp-up.

        Returns:
            (scalar loss, logs: loss, loss_l, loss_c, w, targeted = share of ``x_u``
            that had a target). Logs are tensors except ``w``.
        """
        cfg = self.cfg
        if "x_u" not in batch or "i_u" not in batch:
            raise ValueError(f"temporal_ensembling needs batch keys x_u and i_u (unlabeled images and their "
                             f"indices); got {sorted(batch)}")
        x_l, y_l, x_u, i_u = batch["x_l"], batch["y_l"], batch["x_u"], batch["i_u"]
        n_l = x_l.shape[0]
        x = add_noise(self.augment["view"](torch.cat([x_l, x_u])), cfg.input_noise)
        logits = self.student(x)
        probs_u = torch.softmax(logits[n_l:].float(), 1)
        all_idx = all_gather_concat(i_u)  # every rank's images: the ensembles stay identical under DDP
        self._grow(int(all_idx.max()) + 1)  # the one host sync of the step
        targets, has = ensemble_targets(self.ensemble, self.ensemble_count, i_u, cfg.alpha)
        # mean over all unlabeled images and classes; images without a target add 0
        loss_c = ((probs_u - targets) ** 2 * has[:, None]).mean()
        loss_l = class_loss(logits[:n_l], y_l, x.shape[0])
        w = consistency_weight(cfg, step)
        loss = loss_l + w * loss_c
        update_ensemble(self.ensemble, self.ensemble_count, all_idx, all_gather_concat(probs_u.detach()), cfg.alpha)
        logs = {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_c": loss_c.detach(), "w": w,
                "targeted": has.float().mean()}
        return loss, logs


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"view": cfg.augment}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> TemporalEnsembling:
    """Temporal Ensembling model around ``backbone`` (Laine & Aila's 13-layer ConvNet in the paper).

    Args:
        cfg: :class:`Config`.
        backbone: feature extractor with ``num_features``.
        num_classes: number of classes.
        augment: needs "view" (and optionally "normalize").
    """
    student = Classifier(backbone, num_classes, normalize=augment.get("normalize"))
    return TemporalEnsembling(cfg, student, augment)
