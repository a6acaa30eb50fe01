"""BYOL: the regression loss, the model's parts and one full training step on CPU."""

import pytest
import torch

from stsmooth import augment, models
from stsmooth.core.teacher import Teacher
from stsmooth.data.registry import load
from stsmooth.methods import byol
from stsmooth.methods.contract import SELF_SUPERVISED
from stsmooth.training.train import train_step

SMALL = byol.Config(projector_hidden=32, projector_out=16, predictor_hidden=32)


def _augment():
    opts = dict(flip=False, color=False, blur=False)
    return {"view1": augment.build("byol1", 8, **opts), "view2": augment.build("byol2", 8, **opts),
            "normalize": augment.Normalize("digits")}


def _model(cfg=SMALL):
    torch.manual_seed(0)
    return byol.build(cfg, models.build("digits_cnn", width=8), 0, _augment())


def test_regression_loss_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol.regression_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)
    assert byol.regression_loss(a, -a).item() == pytest.approx(4.0)
    assert byol.regression_loss(a, a.flip(1)).item() == pytest.approx(2.0)  # orthogonal


def test_parts_and_paper_defaults():
    assert (byol.Config().projector_hidden, byol.Config().projector_out) == (4096, 256)
    model = _model()
    assert byol.kind is SELF_SUPERVISED
    assert set(byol.augment_recipes(SMALL).values()) == {"byol1", "byol2"}
    student_ids = {id(p) for p in model.student.parameters()}
    predictor_ids = {id(p) for p in model.predictor.parameters()}
    assert not student_ids & predictor_ids
    assert student_ids | predictor_ids == {id(p) for p in model.parameters()}
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert model.student.features(x).shape == (4, 32)
    assert model.student(x).shape == (4, 16)


class Features2048(torch.nn.Module):
    """A stand-in for ResNet-50's features: num_features = 2048."""

    num_features = 2048

    def forward(self, x):
        return torch.zeros(len(x), 2048)


def test_paper_head_sizes():
    # BYOL §3.3: projector and predictor are Linear(in, 4096) -> BN -> ReLU -> Linear(4096, 256)
    model = byol.build(byol.Config(), Features2048(), 0, {"view1": None, "view2": None})
    p, q = model.student.projector, model.predictor
    assert (p.fc1.in_features, p.fc1.out_features, p.fc2.out_features) == (2048, 4096, 256)
    assert isinstance(p.bn, torch.nn.BatchNorm1d)
    assert (q.fc1.in_features, q.fc1.out_features, q.fc2.out_features) == (256, 4096, 256)
    assert isinstance(q.bn, torch.nn.BatchNorm1d)
    # ResNet-50 BYOL projector: 2048·4096+4096 + 2·4096 + 4096·256+256
    assert sum(x.numel() for x in p.parameters()) == 9_449_728
    small = byol.build(byol.Config(projector_hidden=64, projector_out=32, predictor_hidden=16), Features2048(), 0,
                       {"view1": None, "view2": None})
    assert (small.student.projector.fc1.out_features, small.student.projector.fc2.out_features) == (64, 32)
    assert (small.predictor.fc1.in_features, small.predictor.fc1.out_features,
            small.predictor.fc2.out_features) == (32, 16, 32)
    with pytest.raises(ValueError, match="byol.projector_hidden=0"):
        byol.validate(byol.Config(projector_hidden=0))


def test_one_training_step_updates_student_and_teacher_by_the_rule():
    model = _model()
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.0, norm="eman", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = load("digits").images[:32]
    before_student = [p.detach().clone() for p in model.student.parameters()]
    before_teacher = [p.detach().clone() for p in teacher.module.parameters()]
    before_pred = [p.detach().clone() for p in model.predictor.parameters()]
    loss, logs = train_step(model, teacher, opt, {"x": x, "y": torch.zeros(32, dtype=torch.long)}, 0, 0.9, 0.0)
    assert torch.isfinite(loss) and 0 < loss.item() <= 8  # two directions, each in [0, 4]
    assert float(logs["loss"]) == pytest.approx(loss.item())
    changed = [not torch.equal(a, b) for a, b in zip(before_student, model.student.parameters())]
    assert all(changed[:1]) and sum(changed) >= len(changed) - 2
    assert any(not torch.equal(a, b) for a, b in zip(before_pred, model.predictor.parameters()))
    # TMA (p=0): teacher <- m teacher + (1 - m) student, with the student after the optimiser step
    for t0, t1, s1 in zip(before_teacher, teacher.module.parameters(), model.student.parameters()):
        torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * s1.detach())
    assert teacher.step == 1


def test_no_smoothing_and_asymmetric_loss():
    model = _model(byol.Config(projector_hidden=32, projector_out=16, predictor_hidden=32, symmetric=False))
    teacher = Teacher(model.student, momentum=0.0, preserve_prob=0.0, seed=0)  # teacher = student
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = load("digits").images[:16]
    loss, _ = train_step(model, teacher, opt, {"x": x}, 0, 0.0, 0.0)
    assert 0 < loss.item() <= 4
    for t, s in zip(teacher.module.parameters(), model.student.parameters()):
        assert torch.equal(t, s)


def test_shuffle_bn_teacher_runs():
    # ShuffleBN in one process (003 Table 1 baseline; MoCo's shuffle): the teacher forwards the
    # batch as 2 shuffled sub-batches in train-mode BN, and a sample's key is the teacher's output
    # for it within its sub-batch, returned in the original order.
    model = _model()
    model.shuffle_bn = True
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.5, norm="batch", seed=0)
    seen = []
    hook = teacher.module.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].clone()))
    torch.manual_seed(0)
    x = model.augment["view2"](load("digits").images[:16])
    index = {tuple(r.flatten().tolist()): i for i, r in enumerate(x)}
    assert len(index) == 16  # distinct images: a forwarded row names its sample
    keys = model._target(teacher, x)
    assert [len(c) for c in seen] == [8, 8]
    where = [[index[tuple(r.flatten().tolist())] for r in c] for c in seen]
    assert sorted(where[0] + where[1]) == list(range(16))  # every sample forwarded once
    assert sorted(where[0]) != list(range(8))  # shuffled, not the two halves
    hook.remove()
    reference = torch.empty_like(keys)
    with torch.no_grad():  # each sub-batch normalised with its own statistics, put back in order
        for c, idx in zip(seen, where):
            reference[idx] = teacher.module(c)
    torch.testing.assert_close(keys, reference, rtol=0, atol=1e-6)
    assert not torch.allclose(keys, teacher.module(x), atol=1e-3)  # whole-batch statistics differ

    # the training step's targets go through it: only sub-batches of 8 reach the teacher
    seen.clear()
    hook = teacher.module.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].clone()))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss, _ = train_step(model, teacher, opt, {"x": load("digits").images[:16]}, 0, 0.9, 0.5)
    hook.remove()
    assert torch.isfinite(loss)
    assert [len(c) for c in seen] == [8, 8, 8, 8]  # symmetric BYOL: two target views
