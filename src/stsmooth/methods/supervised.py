"""Supervised-only baseline on the labeled subset, and the classifier network.

The baseline row of the semi-supervised tables (004 Tables 1-2 "Supervised-only";
000 Table 6 compares against it implicitly): the student is trained with
cross-entropy on the labeled images alone and the unlabeled images are ignored.
A smoothed teacher (TMA, SE, STS, EMAN) is still kept by the training loop, so
the baseline also reports what smoothing alone does without unlabeled data.

:class:`Classifier` (backbone + linear head, optional second head) lives here
because it is the simplest method's network; FixMatch and Mean Teacher reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.data.imageset import to_float
from stsmooth.methods.contract import SEMI_SUPERVISED, MethodModel, check_at_least

if TYPE_CHECKING:
    from stsmooth.core.teacher import Teacher

kind = SEMI_SUPERVISED


@dataclass
class Config:
    """Supervised-only baseline (004 §3.1 "Supervised-only")."""

    mu: int = 0  # unlabeled images per labeled image: none are needed (004 Tables 1-2 baseline)
    augment: str = "mean_teacher"  # recipe for the labeled view: translations (+ flips), as 004 §3
    input_noise: float = 0.0  # extra Gaussian noise on [0, 1] inputs; the "mean_teacher" recipe already adds 004's sigma=0.15


def validate(cfg: Config) -> None:
    """One-line ValueError for a negative mu or input noise."""
    check_at_least("supervised", cfg, ("mu", "input_noise"), 0)


class Classifier(nn.Module):
    """Backbone features -> linear class logits, with an optional second head.

    The second head is the decoupled consistency output of 004 §3.4: one head is
    trained for classification, the other for consistency with the teacher.

    Args:
        backbone: module mapping (B, C, H, W) images to (B, backbone.num_features) features.
        num_classes: number of classes (> 1).
        two_heads: add the consistency head of 004 §3.4.
        normalize: optional module applied to the [0, 1] input first (dataset mean/std).

    Raises:
        ValueError: num_classes < 2 or a backbone without ``num_features``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, two_heads: bool = False,
                 normalize: nn.Module | None = None):
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes={num_classes!r} must be at least 2")
        dim = getattr(backbone, "num_features", None)
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"backbone {type(backbone).__name__} has no positive int attribute num_features")
        self.backbone = backbone
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.fc = nn.Linear(dim, int(num_classes))
        self.fc_consistency = nn.Linear(dim, int(num_classes)) if two_heads else None
        self.num_classes = int(num_classes)

    @property
    def two_heads(self) -> bool:
        return self.fc_consistency is not None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 or [0, 1] floats -> (B, num_features) backbone features."""
        return self.backbone(self.normalize(to_float(x)))

    def forward(self, x: torch.Tensor, both_heads: bool = False):
        """Class logits, or (class logits, consistency logits).

        Args:
            x: (B, C, H, W) uint8 images or floats in [0, 1].
            both_heads: also return the consistency head's logits (equal to the
                class logits when there is one head).

        Returns:
            (B, num_classes) logits, or a pair of them when ``both_heads``.
        """
        h = self.features(x)
        logits = self.fc(h)
        if not both_heads:
            return logits
        return logits, (self.fc_consistency(h) if self.fc_consistency is not None else logits)


def require_augment(augment: dict, keys: tuple[str, ...], method: str) -> None:
    """One-line error when the augmentation dict lacks a view the method needs."""
    missing = [k for k in keys if k not in augment]
    if missing:
        raise ValueError(f"{method} needs augment keys {list(keys)}; missing {missing} (got {sorted(augment)})")


def add_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian input noise (004 §3: one of its three noise sources); no-op at std 0."""
    return x + std * torch.randn_like(x) if std > 0 else x


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"view": cfg.augment}


class Supervised(MethodModel):
    """Cross-entropy on the labeled images only.

    Args:
        cfg: the method's :class:`Config`.
        student: the :class:`Classifier` trained (and smoothed into the teacher).
        augment: {"view": module mapping (B, C, H, W) images to floats in [0, 1]}.
    """

    def __init__(self, cfg: Config, student: Classifier, augment: dict[str, nn.Module]):
        super().__init__()
        require_augment(augment, ("view",), "supervised")
        self.cfg = cfg
        self.student = student
        self.augment = nn.ModuleDict({"view": augment["view"]})

    def loss(self, batch: dict, teacher: "Teacher | None", step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the student on the augmented labeled batch.

        Args:
            batch: {"x_l": (B, C, H, W) uint8, "y_l": (B,) int64, "x_u": ignored}.
            teacher: unused (kept by the loop for evaluation).
            step: unused.

        Returns:
            (scalar loss, {"loss": ..., "acc_l": train top-1 on the labeled batch in percent}).
        """
        x = add_noise(self.augment["view"](batch["x_l"]), self.cfg.input_noise)
        logits = self.student(x)
        loss = F.cross_entropy(logits, batch["y_l"])
        # 0-dim tensors, not floats: .item() would wait for the GPU every step (issue 12)
        acc = (logits.argmax(1) == batch["y_l"]).float().mean() * 100.0
        return loss, {"loss": loss.detach(), "acc_l": acc}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> Supervised:
    """Supervised-only model: backbone + linear head trained on labeled images.

    Args:
        cfg: :class:`Config`.
        backbone: feature extractor with ``num_features``.
        num_classes: number of classes.
        augment: view modules; needs "view" (and optionally "normalize").
    """
    student = Classifier(backbone, num_classes, normalize=augment.get("normalize"))
    return Supervised(cfg, student, augment)
