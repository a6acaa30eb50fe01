"""FixMatch: threshold mask, masked loss, which network makes the pseudo-labels, one real step."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.methods import fixmatch
from stsmooth.methods.supervised import Classifier

ROOT = Path(__file__).resolve().parents[2]


class ConstFeatures(nn.Module):
    """Backbone whose features are a fixed vector: the logits are then the fc bias."""

    num_features = 2

    def forward(self, x):
        return torch.zeros(x.shape[0], 2) + 0.0 * x.flatten(1)[:, :1]


class Scale(nn.Module):
    """A deterministic 'augmentation': x / 255 * factor, to tell views apart."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x.float() / 255.0 * self.factor


class RecordingTeacher:
    """Stands in for Teacher where only its outputs matter: fixed logits, remembers its input."""

    def __init__(self, logits):
        self.logits, self.seen = logits, None

    def __call__(self, x):
        self.seen = x
        return self.logits.expand(x.shape[0], -1)


def const_student(bias):
    student = Classifier(ConstFeatures(), 2)
    with torch.no_grad():
        student.fc.weight.zero_()
        student.fc.bias.copy_(torch.tensor(bias))
    return student


def batch(n_l=2, mu=3):
    g = torch.Generator().manual_seed(0)
    return {"x_l": torch.randint(0, 256, (n_l, 1, 8, 8), dtype=torch.uint8, generator=g),
            "y_l": torch.tensor([0, 1] * (n_l // 2)),
            "x_u": torch.randint(0, 256, (n_l * mu, 1, 8, 8), dtype=torch.uint8, generator=g)}


def test_mask_follows_threshold():
    probs = torch.tensor([[0.96, 0.04], [0.90, 0.10], [0.02, 0.98], [0.5, 0.5]])
    labels, mask, conf = fixmatch.pseudo_labels(probs.log(), threshold=0.95)
    assert labels.tolist() == [0, 0, 1, 0]
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.allclose(conf, torch.tensor([0.96, 0.90, 0.98, 0.5]))
    # lower threshold keeps the 0.9 one; temperature 0.5 sharpens 0.9/0.1 to 0.81/0.01 -> 0.9878
    assert fixmatch.pseudo_labels(probs.log(), threshold=0.85)[1].tolist() == [1.0, 1.0, 1.0, 0.0]
    _, mask_t, conf_t = fixmatch.pseudo_labels(probs.log(), threshold=0.95, temperature=0.5)
    assert conf_t[1].item() == pytest.approx(0.81 / 0.82, rel=1e-5) and mask_t[1].item() == 1.0


def test_unlabeled_loss_averages_over_all_images():
    logits = torch.zeros(2, 2)  # CE = log 2 for any label
    loss = fixmatch.unlabeled_loss(logits, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(math.log(2) / 2, rel=1e-6)


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_pseudo_labels_come_from_the_chosen_network(source):
    # Student says class 0 with logits (10, 0); teacher says class 1 with (0, 10).
    student = const_student([10.0, 0.0])
    teacher = RecordingTeacher(torch.tensor([[0.0, 10.0]]))
    cfg = fixmatch.Config(pseudo_labels_from=source)
    model = fixmatch.FixMatch(cfg, student, {"weak": Scale(0.5), "strong": Scale(-1.0)})
    b = batch()
    loss, logs = model.loss(b, teacher, step=0)
    ce_right, ce_wrong = math.log1p(math.exp(-10)), 10 + math.log1p(math.exp(-10))
    loss_l = (ce_right + ce_wrong) / 2  # labels (0, 1) against logits (10, 0)
    loss_u = ce_right if source == "student" else ce_wrong
    assert logs["mask"] == pytest.approx(100.0)
    assert logs["loss_u"] == pytest.approx(loss_u, abs=1e-6)
    assert loss.item() == pytest.approx(loss_l + loss_u, abs=1e-5)
    if source == "teacher":  # the teacher saw the weak views of the unlabeled images only
        assert torch.equal(teacher.seen, b["x_u"].float() / 255.0 * 0.5)
    else:
        assert teacher.seen is None


def test_lambda_u_scales_unlabeled_term():
    b = batch()
    teacher = RecordingTeacher(torch.tensor([[0.0, 10.0]]))
    aug = {"weak": Scale(1.0), "strong": Scale(1.0)}
    losses = [fixmatch.FixMatch(fixmatch.Config(pseudo_labels_from="teacher", lambda_u=lam),
                                const_student([10.0, 0.0]), aug).loss(b, teacher, 0)[0].item() for lam in (0.0, 2.0)]
    assert losses[1] - losses[0] == pytest.approx(2 * (10 + math.log1p(math.exp(-10))), rel=1e-5)


def test_bad_config_and_missing_views():
    with pytest.raises(ValueError, match="pseudo_labels_from"):
        fixmatch.validate(fixmatch.Config(pseudo_labels_from="ema"))
    with pytest.raises(ValueError, match="threshold"):
        fixmatch.validate(fixmatch.Config(threshold=1.5))
    with pytest.raises(ValueError, match="strong"):
        fixmatch.build(fixmatch.Config(), ConstFeatures(), 2, {"weak": Scale(1.0)})


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_one_training_step_with_real_teacher(source):
    from stsmooth import models

    torch.manual_seed(0)
    aug = {"weak": Scale(1.0), "strong": Scale(0.5)}
    model = fixmatch.build(fixmatch.Config(pseudo_labels_from=source, threshold=0.0),
                           models.build("digits_cnn", num_classes=0, in_channels=1, width=8), 10, aug)
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.5, granularity="layer", norm="eman", seed=0)
    before = [p.detach().clone() for p in teacher.module.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
    b = batch(n_l=4, mu=2)
    b["y_l"] = torch.tensor([0, 3, 5, 9])
    loss, logs = model.loss(b, teacher, step=0)
    assert torch.isfinite(loss) and logs["mask"] == pytest.approx(100.0)  # threshold 0 keeps everything
    opt.zero_grad()
    loss.backward()
    opt.step()
    teacher.update(model.student)
    moved = [not torch.equal(a, p) for a, p in zip(before, teacher.module.parameters())]
    assert any(moved)

SMOKE = ["progress=false", "optim.epochs=2", "optim.steps_per_epoch=2", "model.options.width=8", "export=false",
         "eval.every_epochs=1", "eval.probe_size=16"]


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "src/stsmooth/recipes").glob("fixmatch_*.yaml")))
def test_recipes_load(recipe):
    from stsmooth.training import config

    cfg = config.load(ROOT / "src/stsmooth/recipes" / recipe)
    fixmatch.validate(cfg.fixmatch)
    assert cfg.method == "fixmatch" and (cfg.data.labels_per_class or cfg.data.label_fraction)


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_digits_recipe_trains_and_resumes_bit_identically(tmp_path, monkeypatch, source):
    """FixMatch (classic and EMA-teacher, STS teacher) through the real loop; a crash after
    epoch 1 and ``resume=true`` give the same teacher and student as an uninterrupted run."""
    from stsmooth.training import checkpoint, config, train

    def cfg(out, *more):
        return config.load(ROOT / "src/stsmooth/recipes/fixmatch_digits.yaml",
                           SMOKE + [f"fixmatch.pseudo_labels_from={source}", "teacher.preserve_prob=0.5",
                                    f"out={tmp_path / out}", *more])

    straight = train.run(cfg("a"))
    assert straight["labels"] == 30 and 0 <= straight["teacher"]["top1"] <= 100
    real_save = checkpoint.save

    def crash_after_epoch_1(state, path):
        real_save(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train.ckpt, "save", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg("b"))
    monkeypatch.setattr(train.ckpt, "save", real_save)
    resumed = train.run(cfg("b", "resume=true"))
    assert resumed["teacher"] == straight["teacher"] and resumed["student"] == straight["student"]
    a = checkpoint.load(tmp_path / "a/checkpoints/last.pt")
    b = checkpoint.load(tmp_path / "b/checkpoints/last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["teacher"]["module"][k], b["teacher"]["module"][k]) for k in a["teacher"]["module"])
