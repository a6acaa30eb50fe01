"""MoCo v2: InfoNCE, the key queue and one full training step on CPU."""

import math

import pytest
import torch
import torch.nn.functional as F

from stsmooth import augment, models
from stsmooth.core.teacher import Teacher
from stsmooth.data.registry import load
from stsmooth.methods import moco
from stsmooth.training.train import train_step

SMALL = moco.Config(queue_size=10, temperature=0.2, projector_hidden=32, projector_out=8)


def _model(cfg=SMALL):
    torch.manual_seed(0)
    aug = augment.build("moco", 8, flip=False, color=False, blur=False)
    return moco.build(cfg, models.build("digits_cnn", width=8), 0,
                      {"query": aug, "key": aug, "normalize": augment.Normalize("digits")})


def test_info_nce_matches_cross_entropy_by_hand():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 4), dim=1)
    k = F.normalize(torch.randn(3, 4), dim=1)
    queue = F.normalize(torch.randn(4, 5), dim=0)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue], 1) / 0.2
    expected = -(logits[:, 0] - logits.logsumexp(1)).mean()
    assert moco.info_nce(q, k, queue, 0.2).item() == pytest.approx(expected.item(), rel=1e-6)
    # a perfect positive and orthogonal negatives: loss = log(1 + K e^{-1/T})
    q = torch.eye(4)[:1]
    queue = torch.eye(4)[:, 1:]
    assert moco.info_nce(q, q, queue, 0.2).item() == pytest.approx(math.log(1 + 3 * math.exp(-5)), rel=1e-5)


def test_queue_wraps_around():
    model = _model()
    assert model.queue.shape == (8, 10)
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(10))
    keys = [F.normalize(torch.randn(4, 8), dim=1) for _ in range(3)]
    for k in keys:
        model._enqueue(k)
    assert int(model.queue_ptr) == 2
    torch.testing.assert_close(model.queue[:, 4:8], keys[1].T)
    torch.testing.assert_close(model.queue[:, 8:10], keys[2][:2].T)
    torch.testing.assert_close(model.queue[:, 0:2], keys[2][2:].T)


def test_one_training_step_updates_student_teacher_and_queue():
    assert (moco.Config().queue_size, moco.Config().temperature) == (65536, 0.2)
    model = _model(moco.Config(queue_size=64, projector_hidden=32, projector_out=8))
    teacher = Teacher(model.student, momentum=0.99, preserve_prob=0.0, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = load("digits").images[:16]
    queue0 = model.queue.clone()
    t0 = [p.detach().clone() for p in teacher.module.parameters()]
    s0 = [p.detach().clone() for p in model.student.parameters()]
    loss, logs = train_step(model, teacher, opt, {"x": x}, 0, 0.99, 0.0)
    assert torch.isfinite(loss) and loss.item() > 0
    assert 0 <= float(logs["acc1"]) <= 100
    assert any(not torch.equal(a, b) for a, b in zip(s0, model.student.parameters()))
    for a, b, s in zip(t0, teacher.module.parameters(), model.student.parameters()):
        torch.testing.assert_close(b, 0.99 * a + 0.01 * s.detach())
    assert int(model.queue_ptr) == 16
    assert not torch.equal(model.queue[:, :16], queue0[:, :16]) and torch.equal(model.queue[:, 16:], queue0[:, 16:])
    assert "queue" in model.state_dict()  # the queue is saved with the model


def test_spatial_ensemble_replaces_whole_layers():
    # SE (m=0, p=0.5, layer-wise; 000 Eq. 2): each layer (module) of the teacher, its weights
    # and EMAN statistics together, is either kept or replaced by the student's, and with this
    # seed some layers are replaced and some kept.
    model = _model(moco.Config(queue_size=64, projector_hidden=32, projector_out=8, symmetric=True))
    teacher = Teacher(model.student, momentum=0.0, preserve_prob=0.5, granularity="layer", seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = {n: t.clone() for n, t in teacher.module.state_dict().items()}
    train_step(model, teacher, opt, {"x": load("digits").images[:16]}, 0, 0.0, 0.5)
    after, student = teacher.module.state_dict(), model.student.state_dict()
    fate: dict[str, set[bool]] = {}  # layer -> {replaced?} over its tensors
    for name, old in before.items():
        if not old.is_floating_point() or torch.equal(old, student[name]):
            continue  # counters are copied; a tensor the step left alone cannot tell
        kept, replaced = torch.equal(after[name], old), torch.equal(after[name], student[name])
        assert kept != replaced, name  # kept or copied, never a mixture
        fate.setdefault(name.rsplit(".", 1)[0], set()).add(replaced)
    assert len(fate) >= 6 and all(len(f) == 1 for f in fate.values()), fate  # whole layers
    assert {f for fs in fate.values() for f in fs} == {True, False}, fate


def test_paper_head_sizes():
    class Features2048(torch.nn.Module):
        num_features = 2048

    # MoCo v2: projector Linear(in, 2048) -> ReLU -> Linear(2048, 128), no BatchNorm, no predictor
    model = moco.build(moco.Config(queue_size=4), Features2048(), 0, {"query": None, "key": None})
    p = model.student.projector
    assert (p.fc1.in_features, p.fc1.out_features, p.fc2.out_features) == (2048, 2048, 128)
    assert isinstance(p.bn, torch.nn.Identity) and not hasattr(model, "predictor")


def test_bad_config():
    with pytest.raises(ValueError, match="queue_size"):
        moco.validate(moco.Config(queue_size=0))
