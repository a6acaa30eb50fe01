"""FixMatch: pseudo-labels from a weak view train the strong view, and its EMA-teacher form.

Two ways to make the pseudo-labels, chosen by ``Config.pseudo_labels_from``:

- ``"student"`` — classic FixMatch (Sohn et al. 2020, as run in 000 §4.1): one
  network sees ``cat(weak(x_l), weak(x_u), strong(x_u))`` in one forward pass, so
  all views share the same BatchNorm batch statistics; the weak-view predictions
  (detached) are thresholded into hard pseudo-labels. The smoothed teacher is
  only used for evaluation ("employing the TMA teacher for evaluation", 000 §4.1).
- ``"teacher"`` — EMA-teacher FixMatch (003 §4.1, Figure 2): the teacher makes
  the pseudo-labels from ``weak(x_u)`` without gradients, the student sees
  ``cat(weak(x_l), strong(x_u))``. With ``teacher.norm=eman`` this is
  FixMatch-EMAN; with ``teacher.norm=batch`` it is the "BN" row of 003 Table 1.

Loss (FixMatch Eq. 1-4): ``CE(student(weak(x_l)), y_l)
+ lambda_u * mean_b[ 1(max q_b >= tau) * CE(student(strong(u_b)), argmax q_b) ]``
where ``q_b`` is the softmax of the pseudo-labelling network on ``weak(u_b)``
and the mean runs over all ``mu * B`` unlabeled images (masked ones count as 0).

000 §4.1's wording swaps the views ("the student only uses random crop and flip,
the teacher additionally adopts random augmentation"); we follow FixMatch and
003 Figure 2, where the strong (RandAugment) view is the student's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.methods.contract import SEMI_SUPERVISED, MethodModel
from stsmooth.methods.supervised import Classifier, require_augment

if TYPE_CHECKING:
    from stsmooth.core.teacher import Teacher

kind = SEMI_SUPERVISED

PSEUDO_LABEL_SOURCES = ("student", "teacher")


@dataclass
class Config:
    """FixMatch hyper-parameters (000 §4.1; FixMatch paper's defaults)."""

    pseudo_labels_from: str = "student"  # "student": classic FixMatch (000 §4.1); "teacher": EMA-teacher FixMatch (003 Fig. 2)
    threshold: float = 0.95  # confidence threshold tau (FixMatch; 000 §4.1 keeps it)
    lambda_u: float = 1.0  # unlabeled loss weight (FixMatch)
    mu: int = 7  # unlabeled images per labeled image: 64 labeled + 448 unlabeled (000 §4.1); 003 uses 64 + 320 (mu=5)
    temperature: float = 1.0  # softmax temperature of the pseudo-labelling network; 1 = FixMatch's hard labels
    weak: str = "fixmatch_weak"  # augment recipe of the weak view: flip + translate (FixMatch)
    strong: str = "fixmatch_strong"  # augment recipe of the strong view: RandAugment + Cutout (FixMatch)


def validate(cfg: Config) -> None:
    """One-line ValueError for an out-of-range FixMatch setting."""
    if cfg.pseudo_labels_from not in PSEUDO_LABEL_SOURCES:
        raise ValueError(f"fixmatch pseudo_labels_from={cfg.pseudo_labels_from!r}; allowed: {list(PSEUDO_LABEL_SOURCES)}")
    if not 0.0 <= cfg.threshold <= 1.0:
        raise ValueError(f"fixmatch threshold={cfg.threshold!r} must be in [0, 1]")
    if cfg.lambda_u < 0:
        raise ValueError(f"fixmatch lambda_u={cfg.lambda_u!r} must be >= 0")
    if int(cfg.mu) < 1:
        raise ValueError(f"fixmatch mu={cfg.mu!r} must be a positive integer")
    if cfg.temperature <= 0:
        raise ValueError(f"fixmatch temperature={cfg.temperature!r} must be > 0")


def pseudo_labels(logits_weak: torch.Tensor, threshold: float,
                  temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels and the confidence mask (FixMatch Eq. 3).

    Args:
        logits_weak: (N, K) logits of the pseudo-labelling network on weak views
            (gradients are not taken through them).
        threshold: keep a pseudo-label when its softmax probability is >= threshold.
        temperature: softmax temperature.

    Returns:
        (labels (N,) int64, mask (N,) float 0/1, confidence (N,) float).
    """
    probs = torch.softmax(logits_weak.detach().float() / temperature, dim=1)
    confidence, labels = probs.max(dim=1)
    mask = (confidence >= threshold).float()
    return labels, mask, confidence


def unlabeled_loss(logits_strong: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked cross-entropy averaged over all unlabeled images (FixMatch Eq. 4).

    Args:
        logits_strong: (N, K) student logits on strong views.
        labels: (N,) pseudo-labels.
        mask: (N,) 0/1 weights.

    Returns:
        Scalar: sum_b mask_b * CE_b / N.
    """
    return (F.cross_entropy(logits_strong, labels, reduction="none") * mask).mean()


class FixMatch(MethodModel):
    """FixMatch with pseudo-labels from the student (classic) or the teacher (003 Fig. 2).

    Args:
        cfg: :class:`Config`.
        student: the :class:`Classifier` being trained.
        augment: {"weak": module, "strong": module}, each mapping (B, C, H, W)
            images to floats in [0, 1].
    """

    def __init__(self, cfg: Config, student: Classifier, augment: dict[str, nn.Module]):
        super().__init__()
        require_augment(augment, ("weak", "strong"), "fixmatch")
        self.cfg = cfg
        self.student = student
        self.augment = nn.ModuleDict({"weak": augment["weak"], "strong": augment["strong"]})

    def loss(self, batch: dict, teacher: "Teacher | None", step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Supervised + masked pseudo-label loss for one batch.

        Args:
            batch: {"x_l": (B, C, H, W) uint8, "y_l": (B,) int64, "x_u": (mu*B, C, H, W) uint8}.
            teacher: the smoothed teacher; needed only when ``pseudo_labels_from="teacher"``.
            step: global step (unused: FixMatch's weights are constant).

        Returns:
            (scalar loss, logs with loss, loss_l, loss_u, mask (share of unlabeled
            images above threshold, %), conf (mean confidence)).
        """
        cfg = self.cfg
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        n_l = x_l.shape[0]
        weak_l = self.augment["weak"](x_l)
        weak_u = self.augment["weak"](x_u)
        strong_u = self.augment["strong"](x_u)
        if cfg.pseudo_labels_from == "student":
            # One forward over all views: BN batch statistics are shared (003 §4.1).
            logits = self.student(torch.cat([weak_l, weak_u, strong_u]))
            logits_l = logits[:n_l]
            logits_weak, logits_strong = logits[n_l:].chunk(2)
        else:
            if teacher is None:
                raise ValueError("fixmatch pseudo_labels_from='teacher' needs a Teacher, got None")
            with torch.no_grad():
                logits_weak = teacher(weak_u)
            logits = self.student(torch.cat([weak_l, strong_u]))
            logits_l, logits_strong = logits[:n_l], logits[n_l:]
        labels, mask, conf = pseudo_labels(logits_weak, cfg.threshold, cfg.temperature)
        loss_l = F.cross_entropy(logits_l, y_l)
        loss_u = unlabeled_loss(logits_strong, labels, mask)
        loss = loss_l + cfg.lambda_u * loss_u
        # 0-dim tensors, not floats: .item() would wait for the GPU every step (issue 12)
        return loss, {"loss": loss.detach(), "loss_l": loss_l.detach(), "loss_u": loss_u.detach(),
                      "mask": mask.mean() * 100.0, "conf": conf.mean()}


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"weak": cfg.weak, "strong": cfg.strong}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> FixMatch:
    """FixMatch model around ``backbone`` (WRN-28-2 on CIFAR-10 / WRN-28-8 on CIFAR-100 in 000).

    Args:
        cfg: :class:`Config`.
        backbone: feature extractor with ``num_features``.
        num_classes: number of classes.
        augment: needs "weak" and "strong" (and optionally "normalize").
    """
    student = Classifier(backbone, num_classes, normalize=augment.get("normalize"))
    return FixMatch(cfg, student, augment)
