"""Checkpoints: weights_only round trip, atomic save, random states, backbone export."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.models import build
from stsmooth.models.encoder import Encoder as Student
from stsmooth.models.export import load_safetensors
from stsmooth.models.heads import MLP
from stsmooth.training import checkpoint


def _state(teacher_momentum=0.9):
    torch.manual_seed(0)
    student = Student(build("digits_cnn", width=4), MLP(16, 8, 4))
    model = nn.ModuleDict({"student": student})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    teacher = Teacher(student, momentum=teacher_momentum, preserve_prob=0.0, seed=3)
    loss = student(torch.randn(4, 1, 8, 8)).square().mean()
    loss.backward()
    opt.step()
    teacher.update(student)  # the teacher now lags the student
    return model, opt, teacher, checkpoint.state(model=model, optimizer=opt, teacher=teacher, step=7, epoch=2,
                                                 config={"method": "byol", "model": {"name": "digits_cnn"}},
                                                 meta={"in_channels": 1})


def test_roundtrip_is_weights_only(tmp_path):
    model, opt, teacher, state = _state()
    path = checkpoint.save(state, tmp_path / "ck" / "last.pt")
    raw = torch.load(path, weights_only=True)  # must not need any pickled class
    assert raw["step"] == 7 and raw["epoch"] == 2 and raw["config"]["method"] == "byol"
    loaded = checkpoint.load(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    fresh = Teacher(model["student"], momentum=0.9, preserve_prob=0.0, seed=0)
    fresh.load_state_dict(loaded["teacher"])
    assert fresh.step == teacher.step and fresh.seed == teacher.seed
    for a, b in zip(fresh.module.parameters(), teacher.module.parameters()):
        assert torch.equal(a, b)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded["optimizer"])


def test_crash_during_save_keeps_previous(tmp_path, monkeypatch):
    *_, state = _state()
    path = tmp_path / "last.pt"
    checkpoint.save({**state, "step": 1}, path)
    before = path.read_bytes()

    def torn_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save({**state, "step": 2}, path)
    assert path.read_bytes() == before
    assert checkpoint.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a stsmooth checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_rng_state_roundtrip():
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    saved = checkpoint.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    checkpoint.set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_export_teacher_backbone_with_torchvision_names(tmp_path):
    model, opt, teacher, state = _state()
    checkpoint.save(state, tmp_path / "last.pt")
    out = checkpoint.export(tmp_path / "last.pt", tmp_path / "teacher.safetensors")
    tensors = load_safetensors(out)
    expected = teacher.module.backbone.state_dict()
    assert set(tensors) == set(expected)  # plain backbone names: conv1.weight, bn1.running_mean, ...
    assert "conv1.weight" in tensors
    for k, v in expected.items():
        assert torch.equal(tensors[k], v)
    student = load_safetensors(checkpoint.export(tmp_path / "last.pt", tmp_path / "s.safetensors", which="student"))
    assert torch.equal(student["conv1.weight"], model["student"].backbone.conv1.weight)
    assert not torch.equal(student["conv1.weight"], tensors["conv1.weight"])
    with pytest.raises(ValueError, match="safetensors"):
        checkpoint.export(tmp_path / "last.pt", tmp_path / "x.pt")
