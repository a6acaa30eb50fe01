"""Mean Teacher: consistency costs, sigmoid ramp-up, two-head logit distance, Π-model, one real step."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.methods import mean_teacher as mt
from stsmooth.methods.supervised import Classifier

ROOT = Path(__file__).resolve().parents[2]


class ConstFeatures(nn.Module):
    """Features fixed to (1, 0): class logits = fc.weight[:, 0] + fc.bias."""

    num_features = 2

    def forward(self, x):
        return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2) + 0.0 * x.flatten(1)[:, :1]


class ToFloat(nn.Module):
    def forward(self, x):
        return x.float() / 255.0


class RecordingTeacher:
    def __init__(self, logits):
        self.logits, self.calls = logits, 0

    def __call__(self, x):
        self.calls += 1
        return self.logits.expand(x.shape[0], -1)


def batch(n_l=2, mu=2):
    g = torch.Generator().manual_seed(1)
    return {"x_l": torch.randint(0, 256, (n_l, 1, 8, 8), dtype=torch.uint8, generator=g),
            "y_l": torch.arange(n_l) % 2,
            "x_u": torch.randint(0, 256, (n_l * mu, 1, 8, 8), dtype=torch.uint8, generator=g)}


P_TEACHER = torch.tensor([[0.9, 0.1]]).log()  # teacher softmax (0.9, 0.1)
UNIFORM = torch.zeros(1, 2)  # student softmax (0.5, 0.5)


def test_softmax_mse_value():
    # ((0.5-0.9)^2 + (0.5-0.1)^2) / 2 classes
    assert mt.softmax_mse(UNIFORM, P_TEACHER).item() == pytest.approx(0.16, rel=1e-6)


def test_softmax_kl_value():
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert mt.softmax_kl(UNIFORM, P_TEACHER).item() == pytest.approx(expected, rel=1e-6)
    assert mt.softmax_kl(P_TEACHER, P_TEACHER).item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_reaches_a_target_that_is_not_detached():
    s, t = UNIFORM.clone().requires_grad_(), P_TEACHER.clone().requires_grad_()
    mt.softmax_mse(s, t).backward()
    assert t.grad is not None and s.grad is not None


def test_pi_model_targets_come_from_the_student():
    torch.manual_seed(0)
    student = Classifier(ConstFeatures(), 2)
    teacher = RecordingTeacher(P_TEACHER)
    model = mt.MeanTeacher(mt.Config(targets_from="student", rampup_steps=0, consistency_weight=1.0),
                           student, {"view": ToFloat()})
    loss, logs = model.loss(batch(), teacher, step=0)
    # Deterministic view, no noise, no dropout: both passes agree, so the consistency is exactly 0.
    assert teacher.calls == 0 and logs["loss_c"] == 0.0
    model = mt.MeanTeacher(mt.Config(targets_from="teacher", rampup_steps=0, consistency_weight=1.0),
                           student, {"view": ToFloat()})
    assert model.loss(batch(), teacher, step=0)[1]["loss_c"] > 0 and teacher.calls == 1


def test_sigmoid_rampup_weight():
    cfg = mt.Config(consistency_weight=10.0, rampup_steps=100)
    assert mt.consistency_weight(cfg, 0) == pytest.approx(10 * math.exp(-5), rel=1e-6)
    assert mt.consistency_weight(cfg, 50) == pytest.approx(10 * math.exp(-1.25), rel=1e-6)
    assert mt.consistency_weight(cfg, 100) == pytest.approx(10.0)
    assert mt.consistency_weight(cfg, 10_000) == pytest.approx(10.0)
    assert mt.consistency_weight(mt.Config(consistency_weight=3.0, rampup_steps=0), 0) == 3.0


def test_logit_distance_value():
    assert mt.logit_distance(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 2.0]])).item() == pytest.approx(2.0)


@pytest.mark.parametrize("cost", ["mse", "kl"])
def test_two_head_loss_by_hand(cost):
    # Class head logits (0, 0), consistency head logits (log .9, log .1) via fc weights on feature 1.
    student = Classifier(ConstFeatures(), 2, two_heads=True)
    with torch.no_grad():
        for p in student.parameters():
            p.zero_()
        student.fc_consistency.weight[:, 0] = P_TEACHER[0]
    cfg = mt.Config(consistency=cost, consistency_weight=4.0, rampup_steps=10, two_heads=True,
                    logit_distance=0.5, input_noise=0.0)
    model = mt.MeanTeacher(cfg, student, {"view": ToFloat()})
    teacher = RecordingTeacher(UNIFORM)  # target (0.5, 0.5)
    loss, logs = model.loss(batch(), teacher, step=5)
    cons = mt.softmax_mse(P_TEACHER, UNIFORM) if cost == "mse" else mt.softmax_kl(P_TEACHER, UNIFORM)
    dist = (math.log(0.9) ** 2 + math.log(0.1) ** 2) / 2
    w = 4.0 * math.exp(-5 * 0.25)
    class_loss = 2 * math.log(2) / 6  # uniform class head: 2 labeled CEs over all 2 + 4 images (004)
    assert logs["loss_l"] == pytest.approx(class_loss, rel=1e-6)
    assert logs["loss_c"] == pytest.approx(cons.item(), rel=1e-6)  # consistency head vs teacher
    assert logs["logit_dist"] == pytest.approx(dist, rel=1e-6)
    assert loss.item() == pytest.approx(class_loss + w * cons.item() + 0.5 * dist, rel=1e-5)
    assert teacher.calls == 1


class FirstTwoPixels(nn.Module):
    """Features = the first two pixels in [0, 1]: each image gets its own logits."""

    num_features = 2

    def forward(self, x):
        return x.flatten(1)[:, :2]


def test_class_loss_divides_by_the_whole_minibatch():
    """004's releases: sum of the labeled cross-entropies / (labeled + unlabeled) images.

    PyTorch ``main.py``: ``CrossEntropyLoss(size_average=False, ignore_index=NO_LABEL)(...) /
    minibatch_size``; TensorFlow ``classification_costs``: "mean over all examples, not just
    labeled". Logits differ per image, so the labeled mean, the minibatch mean and a
    cross-entropy that also counted the unlabeled images all give different numbers.
    """
    student = Classifier(FirstTwoPixels(), 2)
    with torch.no_grad():
        student.fc.weight.copy_(math.log(9) * torch.eye(2))
        student.fc.bias.zero_()
    x_l = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    x_l[0, 0, 0, 0] = 255  # logits (ln 9, 0): softmax (0.9, 0.1)
    x_l[1, 0, 0, 1] = 255  # logits (0, ln 9): softmax (0.1, 0.9)
    x_u = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)  # logits (0, 0): uniform
    b = {"x_l": x_l, "y_l": torch.tensor([0, 0]), "x_u": x_u}
    cfg = mt.Config(consistency_weight=3.0, rampup_steps=0, input_noise=0.0)
    model = mt.MeanTeacher(cfg, student, {"view": ToFloat()})
    loss, logs = model.loss(b, RecordingTeacher(UNIFORM), step=0)
    class_loss = (-math.log(0.9) - math.log(0.1)) / 4  # 2 labeled CEs over 4 images, not over 2
    # softmax_mse_loss: sum_{n,k} (p_s - p_t)^2 / K / N = (2 labeled x 2 classes x 0.4^2) / 2 / 4
    cons = 4 * 0.4**2 / 2 / 4
    assert logs["loss_l"] == pytest.approx(class_loss, rel=1e-6)
    assert logs["loss_c"] == pytest.approx(cons, rel=1e-6)
    assert loss.item() == pytest.approx(class_loss + 3.0 * cons, rel=1e-6)
    # Without unlabeled images the minibatch is the labeled batch: the plain mean.
    loss, logs = model.loss({**b, "x_u": b["x_u"][:0]}, RecordingTeacher(UNIFORM), step=0)
    assert logs["loss_l"] == pytest.approx((-math.log(0.9) - math.log(0.1)) / 2, rel=1e-6)


def test_consistency_covers_labeled_and_unlabeled_images():
    seen = []

    class Count(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return x.float() / 255.0

    model = mt.build(mt.Config(input_noise=0.0), ConstFeatures(), 2, {"view": Count()})
    model.loss(batch(n_l=2, mu=3), RecordingTeacher(UNIFORM), step=0)
    assert seen == [8, 8]  # 2 labeled + 6 unlabeled, once for the student and once for the teacher


def test_bad_config():
    with pytest.raises(ValueError, match="consistency"):
        mt.validate(mt.Config(consistency="l1"))
    with pytest.raises(ValueError, match="targets_from"):
        mt.validate(mt.Config(targets_from="ema"))
    with pytest.raises(ValueError, match="rampup_steps"):
        mt.validate(mt.Config(rampup_steps=-1))
    with pytest.raises(ValueError, match="two_heads"):
        mt.MeanTeacher(mt.Config(two_heads=True), Classifier(ConstFeatures(), 2), {"view": ToFloat()})


@pytest.mark.parametrize("two_heads,momentum,preserve", [(False, 0.99, 0.5), (True, 0.0, 0.0)])
def test_one_training_step_with_real_teacher(two_heads, momentum, preserve):
    """Mean Teacher + STS, and the two-head Π-model (teacher = student: m = 0, p = 0)."""
    from stsmooth import models

    torch.manual_seed(0)
    cfg = mt.Config(two_heads=two_heads, rampup_steps=10, consistency_weight=10.0)
    model = mt.build(cfg, models.build("digits_cnn", num_classes=0, in_channels=1, width=8), 10,
                     {"view": ToFloat()})
    teacher = Teacher(model.student, momentum=momentum, preserve_prob=preserve, granularity="layer",
                      norm="eman", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    b = batch(n_l=4, mu=2)
    loss, logs = model.loss(b, teacher, step=3)
    assert torch.isfinite(loss) and logs["w"] == pytest.approx(10.0 * math.exp(-5 * 0.49))
    opt.zero_grad()
    loss.backward()
    opt.step()
    teacher.update(model.student)
    s = dict(model.student.named_parameters())
    t = dict(teacher.module.named_parameters())
    if momentum == 0.0 and preserve == 0.0:  # Π-model: the teacher is the student
        assert all(torch.equal(t[k], s[k]) for k in s)
    else:
        assert any(not torch.equal(t[k], s[k]) for k in s)



@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "src/stsmooth/recipes").glob("*.yaml")
                                          if p.name.startswith(("mean_teacher_", "pi_model_"))))
def test_recipes_load(recipe):
    from stsmooth.training import config

    cfg = config.load(ROOT / "src/stsmooth/recipes" / recipe)
    mt.validate(cfg.mean_teacher)
    assert cfg.method == "mean_teacher"
    assert (cfg.mean_teacher.targets_from == "student") == recipe.startswith("pi_model_")


@pytest.mark.parametrize("recipe,extra", [("mean_teacher_digits.yaml", ["mean_teacher.two_heads=true"]),
                                          ("pi_model_digits.yaml", ["mean_teacher.consistency=kl"])])
def test_digits_recipes_train(tmp_path, recipe, extra):
    from stsmooth.training import config, train

    cfg = config.load(ROOT / "src/stsmooth/recipes" / recipe,
                      ["progress=false", "optim.epochs=1", "optim.steps_per_epoch=3", "model.options.width=8",
                       "export=false", "teacher.preserve_prob=0.5", f"out={tmp_path}", *extra])
    res = train.run(cfg)
    assert res["labels"] == 30 and 0 <= res["student"]["top1"] <= 100 and 0 <= res["teacher"]["top1"] <= 100
