"""Export under torchvision names; atomic safetensors roundtrip."""

import os

import pytest
import torch
from torch import nn

from stsmooth.models import build
from stsmooth.models.export import (
    load_safetensors,
    save_safetensors,
    torchvision_state_dict,
)
from stsmooth.models.heads import MLP


class Method(nn.Module):
    """Stands in for a BYOL-like method holding backbone + heads."""

    def __init__(self):
        super().__init__()
        self.backbone = build("resnet18", stem="cifar")
        self.projector = MLP(512, 16, 8)


class Wrapper(nn.Module):
    """Stands in for DDP (`module.`) around torch.compile (`_orig_mod.`)."""

    def __init__(self, inner, attr):
        super().__init__()
        setattr(self, attr, inner)


def test_plain_resnet_names_unchanged():
    m = build("resnet18", num_classes=1000)
    sd = torchvision_state_dict(m)
    assert list(sd) == list(m.state_dict())
    assert len(sd) == 122


def test_strips_wrappers_and_selects_backbone():
    method = Method()
    wrapped = Wrapper(Wrapper(method, "_orig_mod"), "module")
    assert next(iter(wrapped.state_dict())).startswith("module._orig_mod.backbone.")
    sd = torchvision_state_dict(wrapped)
    assert list(sd) == list(method.backbone.state_dict())  # projector dropped, 120 keys (no fc)
    assert len(sd) == 120
    everything = torchvision_state_dict(wrapped, prefix="")
    assert any(k.startswith("projector.") for k in everything)
    # a mapping works too, and backbone.module. nesting is unwrapped
    sd2 = torchvision_state_dict({"backbone.module.conv1.weight": torch.ones(2)})
    assert list(sd2) == ["conv1.weight"]


def test_export_is_an_independent_copy():
    m = build("digits_cnn")
    sd = torchvision_state_dict(m)
    with torch.no_grad():
        m.conv1.weight.add_(1.0)
    assert not torch.equal(sd["conv1.weight"], m.conv1.weight)


def test_bad_input():
    with pytest.raises(ValueError, match="nn.Module or a state dict"):
        torchvision_state_dict([1, 2])
    with pytest.raises(ValueError, match="no tensors"):
        torchvision_state_dict(nn.ReLU())
    with pytest.raises(ValueError, match="'w'"):
        torchvision_state_dict({"module.w": torch.ones(1), "w": torch.ones(1)})


def test_safetensors_roundtrip(tmp_path):
    m = build("resnet18", stem="cifar", num_classes=10)
    m.train()
    m(torch.randn(2, 3, 8, 8))  # move BN running stats away from their init
    path = save_safetensors(torchvision_state_dict(m), tmp_path / "sub" / "r18.safetensors",
                            metadata={"arch": "resnet18"})
    assert path.is_file() and os.listdir(path.parent) == ["r18.safetensors"]  # no temp file left
    loaded = load_safetensors(path)
    fresh = build("resnet18", stem="cifar", num_classes=10)
    fresh.load_state_dict(loaded, strict=True)
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert loaded["bn1.num_batches_tracked"].dtype == torch.int64


def test_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors({"a": torch.arange(3.0)}, path)
    shared = torch.zeros(4)
    with pytest.raises(Exception):
        save_safetensors({"x": shared, "y": shared}, path)  # safetensors refuses shared memory
    assert os.listdir(tmp_path) == ["w.safetensors"]
    assert torch.equal(load_safetensors(path)["a"], torch.arange(3.0))
    with pytest.raises(ValueError, match="safetensors holds tensors only"):
        save_safetensors({"a": 1.0}, path)
    with pytest.raises(FileNotFoundError, match="no safetensors file"):
        load_safetensors(tmp_path / "missing.safetensors")
