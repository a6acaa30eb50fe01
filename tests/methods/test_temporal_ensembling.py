"""Temporal Ensembling: the ensemble update and bias correction by hand, the release's epoch-wise form, the loss."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from stsmooth.methods import temporal_ensembling as te
from stsmooth.methods.supervised import Classifier
from stsmooth.training import checkpoint, config, train

ROOT = Path(__file__).resolve().parents[2]


class Flat(nn.Module):
    """Features = the four pixels of a 1x2x2 image, in [0, 1]."""

    num_features = 4

    def forward(self, x):
        return x.flatten(1)


class ToFloat(nn.Module):
    def forward(self, x):
        return x.float() / 255.0


def test_update_and_bias_correction_by_hand():
    alpha = 0.6
    z, t = torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64)
    idx = torch.tensor([2])
    target, has = te.ensemble_targets(z, t, torch.tensor([0, 2]), alpha)
    assert has.tolist() == [False, False] and target.abs().sum() == 0  # nothing accumulated yet
    te.update_ensemble(z, t, idx, torch.tensor([[1.0, 0.0]]), alpha)
    # Z = 0.4 [1, 0]; target = Z / (1 - 0.6) = [1, 0]
    assert z[2].tolist() == pytest.approx([0.4, 0.0]) and t.tolist() == [0, 0, 1]
    assert te.ensemble_targets(z, t, idx, alpha)[0][0].tolist() == pytest.approx([1.0, 0.0])
    te.update_ensemble(z, t, idx, torch.tensor([[0.0, 1.0]]), alpha)
    # Z = 0.6 * [0.4, 0] + 0.4 * [0, 1] = [0.24, 0.4]; / (1 - 0.36) = [0.375, 0.625]
    assert z[2].tolist() == pytest.approx([0.24, 0.4])
    assert te.ensemble_targets(z, t, idx, alpha)[0][0].tolist() == pytest.approx([0.375, 0.625])
    te.update_ensemble(z, t, idx, torch.tensor([[0.5, 0.5]]), alpha)
    # Z = 0.6 * [0.24, 0.4] + 0.4 * [0.5, 0.5] = [0.344, 0.44]; / (1 - 0.216) = [0.43878, 0.56122]
    target, has = te.ensemble_targets(z, t, torch.tensor([0, 2]), alpha)
    assert has.tolist() == [False, True] and t.tolist() == [0, 0, 3]
    assert target[1].tolist() == pytest.approx([0.344 / 0.784, 0.44 / 0.784]) and target[0].tolist() == [0.0, 0.0]


def test_same_targets_as_the_releases_epoch_end_update():
    """s-laine/tempens train.py: Z = a Z + (1-a) z_epoch at each epoch end, target = Z / (1 - a^(epoch+1)).

    Updating each image's Z right after it used its target gives the same targets when
    every image is seen once per epoch (in any order).
    """
    n, c, alpha, batch = 12, 3, 0.6, 4
    g = torch.Generator().manual_seed(0)
    z_release, target_release = torch.zeros(n, c), torch.zeros(n, c)
    z_ours, t_ours = torch.zeros(n, c), torch.zeros(n, dtype=torch.int64)
    for epoch in range(4):
        predictions = torch.softmax(torch.randn(n, c, generator=g), 1)
        order = torch.randperm(n, generator=g)
        for b in range(n // batch):
            idx = order[b * batch : (b + 1) * batch]
            target, has = te.ensemble_targets(z_ours, t_ours, idx, alpha)
            assert has.all() == (epoch > 0) and has.any() == (epoch > 0)
            if epoch > 0:
                torch.testing.assert_close(target, target_release[idx])
            te.update_ensemble(z_ours, t_ours, idx, predictions[idx], alpha)
        z_release = alpha * z_release + (1 - alpha) * predictions
        target_release = z_release / (1 - alpha ** (epoch + 1))


def _model(**cfg):
    torch.manual_seed(0)
    config_ = te.Config(rampup_steps=0, consistency_weight=cfg.pop("w", 2.0), **cfg)
    return te.build(config_, Flat(), 3, {"view": ToFloat()})


def test_loss_first_pass_then_consistency():
    model = _model(alpha=0.6)
    g = torch.Generator().manual_seed(1)
    x_l = torch.randint(0, 256, (2, 1, 2, 2), dtype=torch.uint8, generator=g)
    x_u = torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.uint8, generator=g)
    batch = {"x_l": x_l, "y_l": torch.tensor([0, 2]), "x_u": x_u, "i_u": torch.tensor([5, 1, 7, 3])}
    loss, logs = model.loss(batch, None, 0)
    logits = model.student(torch.cat([x_l, x_u]).float() / 255)
    ce = nn.functional.cross_entropy(logits[:2], batch["y_l"], reduction="sum") / 6  # / whole minibatch
    assert logs["loss_c"] == 0 and logs["targeted"] == 0 and loss.item() == pytest.approx(ce.item())
    p1 = torch.softmax(logits[2:], 1).detach()
    assert model.ensemble.shape == (8, 3) and model.ensemble_count.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    torch.testing.assert_close(model.ensemble[[5, 1, 7, 3]], 0.4 * p1)
    with torch.no_grad():
        model.student.fc.bias += torch.tensor([0.5, -0.2, 0.1])  # the network has moved since
    # Second pass over two of the images, in another order; one new image (index 0) has no target.
    batch2 = {"x_l": x_l, "y_l": batch["y_l"], "x_u": x_u[[2, 0]], "i_u": torch.tensor([7, 5])}
    batch2["x_u"] = torch.cat([batch2["x_u"], x_u[:1]])
    batch2["i_u"] = torch.tensor([7, 5, 0])
    loss, logs = model.loss(batch2, None, 0)
    p2 = torch.softmax(model.student(torch.cat([x_l, batch2["x_u"]]).float() / 255)[2:], 1).detach()
    target = torch.stack([p1[2], p1[0], torch.zeros(3)])  # bias-corrected after one pass: the prediction itself
    mask = torch.tensor([1.0, 1.0, 0.0])[:, None]
    expected_c = (((p2 - target) ** 2) * mask).sum() / (3 * 3)  # mean over all 3 unlabeled images x 3 classes
    assert logs["loss_c"].item() == pytest.approx(expected_c.item(), rel=1e-5)
    assert logs["targeted"].item() == pytest.approx(2 / 3)
    assert logs["loss"].item() == pytest.approx(logs["loss_l"].item() + 2.0 * expected_c.item(), rel=1e-5)
    torch.testing.assert_close(model.ensemble[7], 0.6 * 0.4 * p1[2] + 0.4 * p2[0])
    assert model.ensemble_count.tolist() == [1, 1, 0, 1, 0, 2, 0, 2]


def test_gradient_flows_only_through_the_prediction():
    model = _model(alpha=0.0, w=1.0)
    x = torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8)
    batch = {"x_l": x[:1], "y_l": torch.tensor([1]), "x_u": x, "i_u": torch.tensor([0, 1, 2])}
    model.loss(batch, None, 0)
    loss, _ = model.loss(batch, None, 0)
    loss.backward()
    assert model.ensemble.grad is None and not model.ensemble.requires_grad
    assert model.student.fc.weight.grad is not None


def test_state_dict_round_trip_resizes_the_ensemble():
    a = _model()
    x = torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.uint8)
    a.loss({"x_l": x[:1], "y_l": torch.tensor([1]), "x_u": x, "i_u": torch.tensor([9, 2, 4, 0])}, None, 0)
    b = _model()
    assert b.ensemble.shape == (0, 3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.ensemble, a.ensemble) and torch.equal(b.ensemble_count, a.ensemble_count)


def test_bad_input():
    with pytest.raises(ValueError, match=r"temporal_ensembling alpha=1.0 must lie in \[0, 1\)"):
        te.validate(te.Config(alpha=1.0))
    with pytest.raises(ValueError, match="temporal_ensembling mu=0 must be >= 1"):
        te.validate(te.Config(mu=0))
    with pytest.raises(ValueError, match=r"needs batch keys x_u and i_u .*got \['x_l', 'x_u', 'y_l'\]"):
        _model().loss({"x_l": torch.zeros(1, 1, 2, 2, dtype=torch.uint8), "y_l": torch.tensor([0]),
                       "x_u": torch.zeros(1, 1, 2, 2, dtype=torch.uint8)}, None, 0)
    with pytest.raises(ValueError, match="unknown config key 'temporal_ensembling.alfa'.*'temporal_ensembling.alpha'"):
        config.load(overrides=["method=temporal_ensembling", "temporal_ensembling.alfa=0.5"])


def test_feed_indices_point_at_the_unlabeled_images(tmp_path):
    cfg = config.load(ROOT / "src/stsmooth/recipes/supervised_digits.yaml",
                      ["progress=false", f"out={tmp_path}", "optim.steps_per_epoch=0", "supervised.mu=2"])
    s = train.setup(cfg)
    seen = []
    for batch in s.feed.epoch(1):
        assert torch.equal(s.data.unlabeled.images[batch["i_u"]], batch["x_u"])
        seen.append(batch["i_u"])
    seen = torch.cat(seen)
    assert len(seen) == len(seen.unique()) > 0.9 * len(s.data.unlabeled)  # one pass: each image at most once


def test_training_run_and_bit_identical_resume(tmp_path, monkeypatch):
    """A digits run: the ensemble fills, is checkpointed, and a resumed run ends identical."""
    args = ["progress=false", "method=temporal_ensembling", "temporal_ensembling.mu=2",
            "temporal_ensembling.rampup_steps=4", "temporal_ensembling.consistency_weight=3",
            "optim.steps_per_epoch=0", "optim.batch_size=16", "optim.epochs=2", "eval.every_epochs=1",
            "model.options.width=8", "export=false", "data.labels_per_class=5"]
    cfg = config.load(ROOT / "src/stsmooth/recipes/supervised_digits.yaml", args + [f"out={tmp_path / 'a'}"])
    res = train.run(cfg)
    state = checkpoint.load(tmp_path / "a/checkpoints/last.pt")
    count = state["model"]["ensemble_count"]
    steps = state["step"]
    assert steps == 2 * (1500 // 32) and math.isfinite(res["teacher"]["top1"])  # 1500 train images, mu*B = 32
    assert count.sum() == steps * 32 and count.max() == 2  # every unlabeled image at most once per epoch
    real_save = checkpoint.save

    def crash_after_epoch_1(st, path):
        real_save(st, path)
        if st["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train.ckpt, "save", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.run(config.load(ROOT / "src/stsmooth/recipes/supervised_digits.yaml", args + [f"out={tmp_path / 'b'}"]))
    monkeypatch.setattr(train.ckpt, "save", real_save)
    train.run(config.load(ROOT / "src/stsmooth/recipes/supervised_digits.yaml", args + [f"out={tmp_path / 'b'}", "resume=true"]))
    resumed = checkpoint.load(tmp_path / "b/checkpoints/last.pt")
    for key in state["model"]:
        assert torch.equal(state["model"][key], resumed["model"][key]), key
