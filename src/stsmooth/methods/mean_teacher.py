"""Mean Teacher (004): consistency between student and smoothed-teacher predictions.

Every image of the batch — labeled and unlabeled — is augmented twice with
independent noise (augmentation recipe, Gaussian input noise, dropout inside the
network); the student sees one copy, the teacher the other. The loss is

    CE(student(x_l), y_l) + w(t) * C(student(x), teacher(x'))        (004 §2)

with ``C`` the mean squared error between softmax outputs (default, 004 §3.4
finds it better) or KL(teacher || student), and ``w(t) = w * exp(-5 (1 - t)^2)``
ramped up over the first ``rampup_steps`` (004 §3, ``schedules.sigmoid_rampup``).
As in both of 004's releases, the labeled cross-entropies are summed and divided
by the whole minibatch, labeled + unlabeled (:func:`class_loss`), and ``C`` and the
logit distance are averaged over all images of the minibatch (and over classes for
the squared errors): with 1 labeled image in 4, the class term is a quarter of a
labeled-only mean. The EMA decay 0.99 during ramp-up and 0.999 after (004 §3.4)
is a teacher schedule (``schedules.two_phase``), set in the recipe's ``teacher.*`` keys.

Decoupled variant (004 §3.4, Figure 4(e)): two heads; the class head gets the
cross-entropy, the consistency head is pulled to the teacher's class output, and
a mean squared distance between the student's two logit vectors (weight
``logit_distance``) controls how tightly the two tasks stay coupled.

Π-model baseline, from the same file in two forms:

- ``targets_from="student"`` (the ``pi_model_*`` recipes): the student itself
  makes the targets on its second noisy pass, gradients flowing through both
  passes as in Laine & Aila ("the Π model applies training to θ'", 004 §2).
  The smoothed teacher is then kept for evaluation only, so any teacher rule
  (TMA, STS, EMAN) can still be compared on the Π-model.
- ``teacher.momentum=0 teacher.preserve_prob=0`` with ``targets_from="teacher"``:
  the teacher is the student, but no gradient flows through the target — the
  "somewhat inefficient" alpha = 0 variant of 004 §3.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core import schedules
from stsmooth.methods.contract import SEMI_SUPERVISED, MethodModel, check_at_least
from stsmooth.methods.supervised import Classifier, add_noise, require_augment

if TYPE_CHECKING:
    from stsmooth.core.teacher import Teacher

kind = SEMI_SUPERVISED

CONSISTENCY_COSTS = ("mse", "kl")
TARGET_SOURCES = ("teacher", "student")


@dataclass
class Config:
    """Mean Teacher hyper-parameters (004 §2-3, App. B)."""

    targets_from: str = "teacher"  # "teacher": Mean Teacher (004 §2); "student": Π-model (Laine & Aila), teacher evaluates only
    consistency: str = "mse"  # "mse" of softmax outputs (004 §2, default) or "kl" (004 §3.4 Fig. 4(f))
    consistency_weight: float = 100.0  # max weight w (cost averaged over classes); 004's published App. B (not in the stored text)
    rampup_steps: int = 40000  # sigmoid ramp-up: "the first 80 epochs" (004 §3) = 40000 steps of batch 100 on 50000 images
    two_heads: bool = False  # decoupled class / consistency heads (004 §3.4 Fig. 4(e))
    logit_distance: float = 0.01  # weight of the MSE between the two heads' logits (004 §3.4; 0.01 in the authors' ResNet runs)
    input_noise: float = 0.0  # extra Gaussian noise on [0, 1] inputs; the "mean_teacher" recipe already adds 004's sigma=0.15
    mu: int = 3  # unlabeled per labeled image in a batch (authors' PyTorch CIFAR-10 runs: 31 labeled of 128)
    augment: str = "mean_teacher"  # recipe: random translations (+ flips) (004 §3)


def validate(cfg: Config) -> None:
    """One-line ValueError for an out-of-range Mean Teacher setting."""
    if cfg.targets_from not in TARGET_SOURCES:
        raise ValueError(f"mean_teacher targets_from={cfg.targets_from!r}; allowed: {list(TARGET_SOURCES)}")
    if cfg.consistency not in CONSISTENCY_COSTS:
        raise ValueError(f"mean_teacher consistency={cfg.consistency!r}; allowed: {list(CONSISTENCY_COSTS)}")
    check_at_least("mean_teacher", cfg, ("consistency_weight", "logit_distance", "input_noise", "rampup_steps", "mu"), 0)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of softmax outputs, averaged over images and classes.

    Args:
        student_logits: (N, K).
        teacher_logits: (N, K) target; gradients flow into it unless it is detached
            (Mean Teacher's target comes from the teacher without gradients; the
            Π-model's from the student, with them).

    Returns:
        Scalar mean_{n,k} (softmax(s)_{nk} - softmax(t)_{nk})^2: CuriousAI/mean-teacher
        ``pytorch/mean_teacher/losses.py`` ``softmax_mse_loss`` (summed, / K) divided
        by ``minibatch_size`` in ``pytorch/main.py``.
    """
    return F.mse_loss(torch.softmax(student_logits, 1), torch.softmax(teacher_logits, 1), reduction="mean")


def softmax_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the softmax outputs, summed over classes, mean over images.

    Args:
        student_logits: (N, K).
        teacher_logits: (N, K) target (gradients flow into it unless detached).

    Returns:
        Scalar mean_n sum_k p_t (log p_t - log p_s): ``softmax_kl_loss`` (summed) of the
        same release divided by ``minibatch_size``.
    """
    log_p_s = torch.log_softmax(student_logits, 1)
    log_p_t = torch.log_softmax(teacher_logits, 1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def class_loss(labeled_logits: torch.Tensor, labels: torch.Tensor, minibatch_size: int) -> torch.Tensor:
    """Cross-entropy summed over the labeled images, divided by the whole minibatch.

    Both releases of 004 do this, so the class term's weight relative to the
    consistency term depends on the labeled share of the batch: CuriousAI/mean-teacher
    ``pytorch/main.py`` (``CrossEntropyLoss(size_average=False, ignore_index=NO_LABEL)``
    then ``/ minibatch_size``) and ``tensorflow/mean_teacher/model.py``
    ``classification_costs`` ("mean over all examples, not just labeled examples").

    Args:
        labeled_logits: (B_l, K) logits of the labeled images.
        labels: (B_l,) int64 class labels.
        minibatch_size: N = labeled + unlabeled images in the minibatch (>= B_l).

    Returns:
        Scalar sum_b CE(labeled_logits_b, labels_b) / N.
    """
    return F.cross_entropy(labeled_logits, labels, reduction="sum") / minibatch_size


def logit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between two logit vectors, over images and classes (004 §3.4)."""
    return F.mse_loss(a, b)


def consistency_weight(cfg: Config, step: int) -> float:
    """w(t) = w * exp(-5 (1 - t)^2), t = min(step / rampup_steps, 1); w at once if no ramp-up."""
    if int(cfg.rampup_steps) <= 0:
        return float(cfg.consistency_weight)
    return float(cfg.consistency_weight) * float(schedules.sigmoid_rampup(int(cfg.rampup_steps))(step))


class MeanTeacher(MethodModel):
    """Mean Teacher / Π-model around a :class:`Classifier`.

    Args:
        cfg: :class:`Config`.
        student: the classifier being trained (two heads when ``cfg.two_heads``).
        augment: {"view": module mapping (B, C, H, W) images to floats in [0, 1]}.
    """

    def __init__(self, cfg: Config, student: Classifier, augment: dict[str, nn.Module]):
        super().__init__()
        require_augment(augment, ("view",), "mean_teacher")
        if cfg.two_heads and not student.two_heads:
            raise ValueError("mean_teacher two_heads=True needs a Classifier built with two_heads=True")
        self.cfg = cfg
        self.student = student
        self.augment = nn.ModuleDict({"view": augment["view"]})
        self._cost = softmax_mse if cfg.consistency == "mse" else softmax_kl

    def loss(self, batch: dict, teacher: "Teacher | None", step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Classification + ramped consistency (+ logit distance) for one batch.

        Args:
            batch: {"x_l": (B, C, H, W) uint8, "y_l": (B,) int64, "x_u": (mu*B, C, H, W) uint8}.
            teacher: the smoothed teacher; its class output is the consistency target
                (unused with ``targets_from="student"``).
            step: global step, for the consistency ramp-up.

        Returns:
            (scalar loss, logs with loss, loss_l (labeled cross-entropy summed / all
            B + mu*B images, :func:`class_loss`), loss_c, w (current consistency weight)
            and, for two heads, logit_dist).
        """
        cfg = self.cfg
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch.get("x_u")
        x = x_l if x_u is None or x_u.numel() == 0 else torch.cat([x_l, x_u])
        n_l = x_l.shape[0]
        # Independent noise for student and teacher: each draws its own augmentation.
        x_s = add_noise(self.augment["view"](x), cfg.input_noise)
        x_t = add_noise(self.augment["view"](x), cfg.input_noise)
        class_logits, cons_logits = self.student(x_s, both_heads=True)
        if cfg.targets_from == "teacher":
            if teacher is None:
                raise ValueError("mean_teacher targets_from='teacher' needs a Teacher, got None")
            with torch.no_grad():
                target = teacher(x_t)
        else:  # Π-model: a second noisy pass of the student, trained through as well
            target = self.student(x_t)
        loss_l = class_loss(class_logits[:n_l], y_l, x.shape[0])
        loss_c = self._cost(cons_logits, target)
        w = consistency_weight(cfg, step)
        loss = loss_l + w * loss_c
        # 0-dim tensors, not floats: .item() would wait for the GPU every step (issue 12)
        logs = {"loss_l": loss_l.detach(), "loss_c": loss_c.detach(), "w": w}
        if cfg.two_heads:
            dist = logit_distance(class_logits, cons_logits)
            loss = loss + cfg.logit_distance * dist
            logs["logit_dist"] = dist.detach()
        logs["loss"] = loss.detach()
        return loss, logs


def augment_recipes(cfg: Config) -> dict[str, str]:
    """Augmentation recipe per view key, for the training loop to build."""
    return {"view": cfg.augment}


def build(cfg: Config, backbone: nn.Module, num_classes: int, augment: dict[str, nn.Module]) -> MeanTeacher:
    """Mean Teacher model around ``backbone`` (ConvNet-13 or a ResNet in 004).

    Args:
        cfg: :class:`Config`.
        backbone: feature extractor with ``num_features``.
        num_classes: number of classes.
        augment: needs "view" (and optionally "normalize").
    """
    student = Classifier(backbone, num_classes, two_heads=cfg.two_heads, normalize=augment.get("normalize"))
    return MeanTeacher(cfg, student, augment)
