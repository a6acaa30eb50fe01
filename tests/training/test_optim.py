"""The optimiser of a run (training/optim.py): the learning rate (warm-up, cosine, step and FixMatch decays)
and the parameter groups (no weight decay on biases and BatchNorm, as the FixMatch / BYOL releases)."""

import math

import pytest
import torch
from torch import nn

from stsmooth import models
from stsmooth.training import config, optim


def test_learning_rate_warmup_then_cosine():
    cfg = config.load(overrides=["optim.lr=0.4", "optim.epochs=10", "optim.warmup_epochs=2"]).optim
    lr_at = optim.lr_schedule(cfg, 5)
    lr = [lr_at(k) for k in range(50)]
    assert lr[0] == pytest.approx(0.4 * 0.001)  # 000 §4.1: warm-up from 0.001 x lr
    assert lr[10] == pytest.approx(0.4)  # end of warm-up
    assert all(a <= b for a, b in zip(lr[:10], lr[1:11])) and all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert lr_at(30) == pytest.approx(0.2)  # half-way through the cosine
    assert lr_at(50) == pytest.approx(0.0, abs=1e-12)
    step = config.load(overrides=["optim.schedule=step", "optim.milestones=[6,8]", "optim.warmup_epochs=0",
                                  "optim.epochs=10"]).optim
    assert [optim.lr_schedule(step, 5)(k * 5) for k in (5, 6, 8)] == pytest.approx([0.1, 0.01, 0.001])
    fm = config.load(overrides=["optim.schedule=fixmatch", "optim.warmup_epochs=0", "optim.epochs=4"]).optim
    assert optim.lr_schedule(fm, 5)(20) == pytest.approx(0.1 * math.cos(7 * math.pi / 16))


def _release_no_decay(model: nn.Module) -> set[str]:
    """Biases and BatchNorm parameters by name and module, as the releases pick them.

    kekmodel/FixMatch-pytorch train.py: ``no_decay = ['bias', 'bn']`` (names); google-research/fixmatch
    fixmatch.py: L2 on ``kernel`` variables only; EMAN main_byol.py ``collect_params``: 'bn',
    'downsample.1' (a BN) and 'bias'.
    """
    out = set()
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            if p_name == "bias" or isinstance(module, nn.modules.batchnorm._NormBase):
                out.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return out


def _group_names(model: nn.Module, groups: list[dict]) -> list[set[str]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [{name_of[id(p)] for p in g["params"]} for g in groups]


def test_exclude_bias_bn_matches_the_releases_on_wide_resnet():
    net = models.build("wrn28_2", num_classes=10)
    decay, no_decay = _group_names(net, optim.param_groups(net, 5e-4, exclude_bias_bn=True))
    assert no_decay == _release_no_decay(net) and len(no_decay) > 20
    assert decay == {n for n, _ in net.named_parameters()} - no_decay
    assert all(net.get_parameter(n).ndim > 1 for n in decay)
    (everything,) = _group_names(net, optim.param_groups(net, 5e-4, exclude_bias_bn=False))
    assert everything == decay | no_decay


def test_excluded_parameters_are_not_decayed_by_sgd():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(2.0)
    cfg = config.load(overrides=["optim.lr=0.1", "optim.weight_decay=0.5", "optim.momentum=0",
                                 "optim.exclude_bias_bn=true"]).optim
    opt = optim.build(cfg, net)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in net.named_parameters():
        # zero gradient: a decayed weight moves by -lr * wd * w = -0.1 (2 -> 1.9); excluded ones stay at 2
        expected = 2.0 if name in _release_no_decay(net) else 2.0 - 0.1 * 0.5 * 2.0
        assert torch.allclose(p, torch.full_like(p, expected)), name
    assert sum(1 for n, _ in net.named_parameters() if n in _release_no_decay(net)) == 4


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_takes_nesterov_from_the_config(nesterov):
    net = nn.Linear(2, 2)
    cfg = config.load(overrides=[f"optim.nesterov={str(nesterov).lower()}"]).optim
    assert all(g["nesterov"] is nesterov for g in optim.build(cfg, net).param_groups)
