"""Supervised-only baseline, the shared Classifier, and the labels-per-class error."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.methods import supervised

ROOT = Path(__file__).resolve().parents[2]


class ToFloat(nn.Module):
    def forward(self, x):
        return x.float() / 255.0


class Flat(nn.Module):
    num_features = 64

    def forward(self, x):
        return x.flatten(1)


def test_classifier_accepts_uint8_and_floats_and_two_heads():
    torch.manual_seed(0)
    net = supervised.Classifier(Flat(), 10, two_heads=True)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    out = net(x)
    assert out.shape == (3, 10)
    assert torch.allclose(out, net(x.float() / 255.0))
    a, b = net(x, both_heads=True)
    assert torch.equal(a, out) and b.shape == (3, 10) and not torch.equal(a, b)
    single = supervised.Classifier(Flat(), 10)
    a, b = single(x, both_heads=True)
    assert a is b


def test_classifier_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        supervised.Classifier(Flat(), 1)
    with pytest.raises(ValueError, match="num_features"):
        supervised.Classifier(nn.Identity(), 10)


def test_loss_is_cross_entropy_on_labeled_images_only():
    torch.manual_seed(0)
    model = supervised.build(supervised.Config(), Flat(), 10, {"view": ToFloat()})
    x_l = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    y_l = torch.tensor([1, 2, 3, 4])
    loss, logs = model.loss({"x_l": x_l, "y_l": y_l, "x_u": torch.zeros(0)}, None, step=0)
    expected = F.cross_entropy(model.student(x_l), y_l)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0.0 <= logs["acc_l"] <= 100.0


def test_missing_view():
    with pytest.raises(ValueError, match="view"):
        supervised.build(supervised.Config(), Flat(), 10, {"weak": ToFloat()})


def test_one_training_step_with_real_teacher():
    from stsmooth import models

    torch.manual_seed(0)
    model = supervised.build(supervised.Config(),
                             models.build("digits_cnn", num_classes=0, in_channels=1, width=8), 10,
                             {"view": ToFloat()})
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.0, norm="eman", seed=0)
    before = [p.detach().clone() for p in teacher.module.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"x_l": torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8), "y_l": torch.arange(6)}
    loss, _ = model.loss(batch, teacher, step=0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    teacher.update(model.student)
    assert any(not torch.equal(a, p) for a, p in zip(before, teacher.module.parameters()))
    assert teacher(batch["x_l"]).shape == (6, 10)


def test_more_labels_per_class_than_a_class_holds_is_an_error():
    from stsmooth import data
    from stsmooth.data import splits

    train = data.load("digits", split="train")  # about 150 images per class
    with pytest.raises(ValueError, match="has 1[0-9][0-9] images but 200 labels per class"):
        splits.split_labeled(train.labels, per_class=200, seed=0)



@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "src/stsmooth/recipes").glob("supervised_*.yaml")))
def test_recipes_load(recipe):
    from stsmooth.training import config

    cfg = config.load(ROOT / "src/stsmooth/recipes" / recipe)
    assert cfg.method == "supervised" and cfg.supervised.mu == 0


def test_recipe_with_more_labels_than_a_class_holds_is_a_clear_error(tmp_path):
    from stsmooth.training import config, run_data

    cfg = config.load(ROOT / "src/stsmooth/recipes/supervised_digits.yaml", ["data.labels_per_class=500", f"out={tmp_path}"])
    with pytest.raises(ValueError, match="images but 500 labels per class"):
        run_data.load(cfg, labeled_subset=True)
