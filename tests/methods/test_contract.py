"""The method contract: the METHODS table, the Protocol's parts, kinds, forward = loss, validate once."""

import dataclasses

import pytest
import torch

from stsmooth import models
from stsmooth.methods import METHODS, fixmatch, supervised
from stsmooth.methods.contract import SELF_SUPERVISED, SEMI_SUPERVISED, MethodModel
from stsmooth.training import config


def test_every_method_keeps_the_contract():
    assert list(METHODS) == ["byol", "moco", "fixmatch", "mean_teacher", "temporal_ensembling", "supervised"]
    for name, method in METHODS.items():
        assert method.__name__ == f"stsmooth.methods.{name}"
        assert method.kind in (SELF_SUPERVISED, SEMI_SUPERVISED), name
        assert dataclasses.is_dataclass(method.Config), name
        method.validate(method.Config())  # the papers' defaults are valid
        assert set(method.augment_recipes(method.Config())), name
        assert not hasattr(method, "uses_teacher_for_eval")
    assert [n for n, m in METHODS.items() if m.kind is SELF_SUPERVISED] == ["byol", "moco"]


def test_kinds_name_their_metrics():
    assert SELF_SUPERVISED.metrics == ("knn_top1", "knn_top5") and SELF_SUPERVISED.knn
    assert SEMI_SUPERVISED.metrics == ("top1", "top5") and SEMI_SUPERVISED.labeled_subset


def test_calling_the_model_is_its_loss():
    model = supervised.build(supervised.Config(), models.build("digits_cnn", width=8), 3,
                             {"view": torch.nn.Identity()})
    assert isinstance(model, MethodModel)
    batch = {"x_l": torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), "y_l": torch.tensor([0, 1, 2, 0])}
    loss, logs = model(batch, None, 0)
    assert torch.equal(loss, model.loss(batch, None, 0)[0]) and logs["loss"] == pytest.approx(loss.item())


def test_loading_a_config_validates_the_method_once(monkeypatch):
    from stsmooth.training.builder import build_model

    calls = []
    monkeypatch.setattr(fixmatch, "validate", lambda cfg: calls.append(cfg))
    cfg = config.load(overrides=["method=fixmatch", "fixmatch.mu=2", "model.name=digits_cnn"])
    meta = {"in_channels": 1, "num_classes": 10, "image_size": 8, "mean": [0.5], "std": [0.25]}
    model, _, _ = build_model(cfg, METHODS["fixmatch"], meta, torch.device("cpu"))
    assert isinstance(model, fixmatch.FixMatch) and calls == [cfg.fixmatch]  # at loading, not again at building
    with pytest.raises(ValueError, match="supervised.mu=-1 must be >= 0"):
        config.load(overrides=["method=supervised", "supervised.mu=-1"])
