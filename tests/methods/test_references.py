"""Method losses against short re-derivations of the authors' released formulas.

Each ``ref_*`` function below restates, in a few lines, what a release computes
(file and function cited); it is written from the formula, not copied. Our
implementation is then checked against it on fixed tensors: the loss value and,
for the full ``Method.loss``, the gradient it sends into the student, so that a
scale or a stop-gradient that differs from the release fails the test.

- Mean Teacher (CuriousAI/mean-teacher ``pytorch/main.py`` ``train``,
  ``pytorch/mean_teacher/losses.py``): class, consistency and residual-logit terms.
- FixMatch (kekmodel/FixMatch-pytorch ``train.py``; the teacher form from
  amazon-science/exponential-moving-average-normalization ``main_fixmatch.py``).
- MoCo (facebookresearch/moco ``moco/builder.py`` ``forward`` and
  ``_dequeue_and_enqueue``): InfoNCE with the queue, and the queue's order.
- BYOL (EMAN release ``models/byol.py`` ``loss_func``/``forward``): 2 - 2 cos, symmetrised.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stsmooth.core.teacher import Teacher
from stsmooth.methods import byol, fixmatch, moco
from stsmooth.methods import mean_teacher as mt
from stsmooth.methods.supervised import Classifier

NO_LABEL = -1  # the Mean Teacher release's label for an unlabeled image


# ---------------------------------------------------------------- references


def ref_mt_class_cost(logits, targets):
    """Mean Teacher release: CE summed over images whose target is not NO_LABEL, / all images."""
    keep = targets != NO_LABEL
    per_image = torch.zeros(logits.shape[0])
    per_image[keep] = -torch.log_softmax(logits[keep], 1).gather(1, targets[keep, None])[:, 0]
    return per_image.sum() / logits.shape[0]


def ref_mt_softmax_mse(student_logits, teacher_logits):
    """``softmax_mse_loss``: squared softmax differences summed over images and classes, / K,
    then divided by the minibatch size in ``main.py``; no gradient into the target."""
    n, k = student_logits.shape
    diff = student_logits.softmax(1) - teacher_logits.detach().softmax(1)
    return (diff**2).sum() / k / n


def ref_mt_softmax_kl(student_logits, teacher_logits):
    """``softmax_kl_loss``: sum over images and classes of p_t (log p_t - log p_s), / minibatch."""
    p_t = teacher_logits.detach().softmax(1)
    return (p_t * (p_t.log() - student_logits.log_softmax(1))).sum() / student_logits.shape[0]


def ref_mt_residual(class_logits, cons_logits):
    """``symmetric_mse_loss``: summed squared logit difference / K (both ways), / minibatch."""
    n, k = class_logits.shape
    return ((class_logits - cons_logits) ** 2).sum() / k / n


def ref_fixmatch_unlabeled(logits_u_w, logits_u_s, threshold, temperature):
    """kekmodel ``train.py``: pseudo-label = argmax softmax(weak / T) (no gradient), kept where
    its probability >= threshold; masked per-image CE of the strong view, mean over ALL images."""
    probs = torch.softmax(logits_u_w.detach() / temperature, dim=-1)
    max_probs, targets = probs.max(dim=-1)
    mask = (max_probs >= threshold).float()
    per_image = -torch.log_softmax(logits_u_s, -1).gather(1, targets[:, None])[:, 0]
    return (per_image * mask).sum() / logits_u_s.shape[0], mask


def ref_moco_logits(q, k, queue, temperature):
    """``builder.py``: l_pos = <q_n, k_n> (N, 1), l_neg = q @ queue (N, K), cat, / T; labels 0."""
    l_pos = torch.einsum("nc,nc->n", q, k)[:, None]
    l_neg = torch.einsum("nc,ck->nk", q, queue)
    return torch.cat([l_pos, l_neg], 1) / temperature, torch.zeros(q.shape[0], dtype=torch.long)


def ref_moco_enqueue(queue, ptr, keys):
    """``_dequeue_and_enqueue``: columns ptr .. ptr+B get keys.T, ptr advances by B mod K
    (the release asserts K % B == 0, so a batch never straddles the end)."""
    b, size = keys.shape[0], queue.shape[1]
    assert size % b == 0
    queue = queue.clone()
    queue[:, ptr : ptr + b] = keys.T
    return queue, (ptr + b) % size


def ref_byol_loss(pred, target):
    """EMAN release ``models/byol.py`` ``loss_func``: 2 - 2 * sum_n cos(pred_n, target_n) / N."""
    cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum()
    return 2 - 2 * cos / pred.shape[0]


# ---------------------------------------------------------------- helpers


class Pixels(nn.Module):
    """A small backbone: tanh(Linear(flattened pixels)), so every image has its own features."""

    def __init__(self, d_in=16, d=6):
        super().__init__()
        self.num_features = d
        self.fc = nn.Linear(d_in, d)

    def forward(self, x):
        return torch.tanh(self.fc(x.flatten(1)))


class Scale(nn.Module):
    """A deterministic 'augmentation' x / 255 * factor: views differ, and can be recomputed."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x.float() / 255.0 * self.factor


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)


def grads_of(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_same_grads(ours, ref):
    for a, b in zip(ours, ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- Mean Teacher


def test_mt_cost_functions_match_the_release():
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(5, 4, generator=g), 3 * torch.randn(5, 4, generator=g)
    torch.testing.assert_close(mt.softmax_mse(s, t), ref_mt_softmax_mse(s, t))
    torch.testing.assert_close(mt.softmax_kl(s, t), ref_mt_softmax_kl(s, t))
    torch.testing.assert_close(mt.logit_distance(s, t), ref_mt_residual(s, t))
    y = torch.tensor([2, 0, NO_LABEL, NO_LABEL, NO_LABEL])
    torch.testing.assert_close(mt.class_loss(s[:2], y[:2], 5), ref_mt_class_cost(s, y))


@pytest.mark.parametrize("cost,two_heads", [("mse", False), ("kl", False), ("mse", True), ("kl", True)])
def test_mt_loss_and_gradients_match_the_release(cost, two_heads):
    """Our whole Mean Teacher loss vs ``main.py``'s class + consistency (+ residual) terms."""
    torch.manual_seed(0)
    student = Classifier(Pixels(), 3, two_heads=two_heads)
    teacher_net = Classifier(Pixels(), 3, two_heads=two_heads)  # any other weights: a smoothed copy
    cfg = mt.Config(consistency=cost, consistency_weight=7.0, rampup_steps=10, two_heads=two_heads,
                    logit_distance=0.3, input_noise=0.0)
    model = mt.MeanTeacher(cfg, student, {"view": Scale(1.0)})
    batch = {"x_l": images(3, 1), "y_l": torch.tensor([0, 2, 1]), "x_u": images(5, 2)}
    params = list(student.parameters())
    loss, logs = model.loss(batch, lambda x: teacher_net(x), step=4)
    ours = grads_of(loss, params)

    x = torch.cat([batch["x_l"], batch["x_u"]]).float() / 255.0
    targets = torch.cat([batch["y_l"], torch.full((5,), NO_LABEL)])
    class_logit, cons_logit = student(x, both_heads=True)
    ema_logit = teacher_net(x).detach()  # the release takes the teacher's first (class) output
    w = 7.0 * math.exp(-5 * (1 - 4 / 10) ** 2)
    consistency = ref_mt_softmax_mse if cost == "mse" else ref_mt_softmax_kl
    ref = ref_mt_class_cost(class_logit, targets) + w * consistency(cons_logit, ema_logit)
    if two_heads:
        ref = ref + 0.3 * ref_mt_residual(class_logit, cons_logit)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert logs["loss_l"] == pytest.approx(ref_mt_class_cost(class_logit, targets).item(), rel=1e-6)
    assert_same_grads(ours, grads_of(ref, params))


# ---------------------------------------------------------------- FixMatch


def test_fixmatch_unlabeled_loss_matches_the_release():
    g = torch.Generator().manual_seed(3)
    weak, strong = 2 * torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    for threshold, temperature in ((0.6, 1.0), (0.8, 0.5)):
        ref, ref_mask = ref_fixmatch_unlabeled(weak, strong, threshold, temperature)
        assert 0 < ref_mask.sum() < 12  # some kept, some masked: the mask matters
        labels, mask, _ = fixmatch.pseudo_labels(weak, threshold, temperature)
        assert torch.equal(mask, ref_mask)
        torch.testing.assert_close(fixmatch.unlabeled_loss(strong, labels, mask), ref)


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_fixmatch_loss_and_gradients_match_the_releases(source):
    """Classic FixMatch (kekmodel: one forward over all views) and the EMA-teacher form
    (EMAN ``main_fixmatch.py``: teacher on weak(u), student on cat(x, strong(u)))."""
    torch.manual_seed(1)
    student = Classifier(Pixels(), 4)
    teacher_net = Classifier(Pixels(), 4)
    with torch.no_grad():  # confident enough that the 0.55 threshold keeps some images
        student.fc.weight.mul_(8)
        teacher_net.fc.weight.mul_(8)
    cfg = fixmatch.Config(pseudo_labels_from=source, threshold=0.55, lambda_u=2.5, temperature=1.0)
    model = fixmatch.FixMatch(cfg, student, {"weak": Scale(1.0), "strong": Scale(0.6)})
    batch = {"x_l": images(2, 4), "y_l": torch.tensor([1, 3]), "x_u": images(8, 5)}
    params = list(student.parameters())
    loss, logs = model.loss(batch, lambda x: teacher_net(x), step=0)
    ours = grads_of(loss, params)

    x_w, u_w, u_s = batch["x_l"] / 255.0, batch["x_u"] / 255.0, batch["x_u"] / 255.0 * 0.6
    if source == "student":
        logits = student(torch.cat([x_w, u_w, u_s]))
        logits_x, (logits_u_w, logits_u_s) = logits[:2], logits[2:].chunk(2)
    else:
        logits = student(torch.cat([x_w, u_s]))
        logits_x, logits_u_s = logits[:2], logits[2:]
        logits_u_w = teacher_net(u_w).detach()
    loss_u, mask = ref_fixmatch_unlabeled(logits_u_w, logits_u_s, 0.55, 1.0)
    assert 0 < mask.sum() < 8
    ref = F.cross_entropy(logits_x, batch["y_l"], reduction="mean") + 2.5 * loss_u
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert logs["mask"] == pytest.approx(mask.mean().item() * 100)
    assert_same_grads(ours, grads_of(ref, params))


# ---------------------------------------------------------------- MoCo


def test_moco_info_nce_matches_the_release():
    g = torch.Generator().manual_seed(6)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(8, 12, generator=g), dim=0)
    logits, labels = ref_moco_logits(q, k, queue, 0.2)
    torch.testing.assert_close(moco.info_nce(q, k, queue, 0.2), F.cross_entropy(logits, labels))


def test_moco_steps_match_the_release_queue_order():
    """Three batches of 4 keys into a queue of 8: each loss sees the queue before its own keys
    go in, the keys replace columns ptr .. ptr+4, and the pointer wraps to 0 then 4."""
    torch.manual_seed(2)
    backbone = Pixels(d=6)
    cfg = moco.Config(queue_size=8, temperature=0.2, projector_hidden=10, projector_out=5)
    model = moco.MoCo(cfg, backbone, {"query": Scale(1.0), "key": Scale(0.7)})
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.0, norm="eman", seed=0)
    with torch.no_grad():  # a teacher that differs from the student, as after some training
        for p in teacher.module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = list(model.student.parameters())
    queue, ptr = model.queue.clone(), 0
    for step in range(3):
        x = images(4, 10 + step)
        loss, _ = model.loss({"x": x}, teacher, step)
        ours = grads_of(loss, params)
        q = F.normalize(model.student(x / 255.0), dim=1)
        k = F.normalize(teacher.module(x / 255.0 * 0.7), dim=1).detach()
        logits, labels = ref_moco_logits(q, k, queue, 0.2)
        ref = F.cross_entropy(logits, labels)
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        assert_same_grads(ours, grads_of(ref, params))
        queue, ptr = ref_moco_enqueue(queue, ptr, k)
        torch.testing.assert_close(model.queue, queue)
        assert int(model.queue_ptr) == ptr
    assert ptr == 4  # wrapped once


# ---------------------------------------------------------------- BYOL


def test_byol_regression_loss_matches_the_release():
    g = torch.Generator().manual_seed(8)
    pred, target = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    torch.testing.assert_close(byol.regression_loss(pred, target), ref_byol_loss(pred, target))


def test_byol_loss_and_gradients_match_the_release():
    """Symmetrised: loss(pred(online(v1)), target(v2)) + loss(pred(online(v2)), target(v1))."""
    torch.manual_seed(3)
    cfg = byol.Config(projector_hidden=10, projector_out=5, predictor_hidden=10)
    model = byol.BYOL(cfg, Pixels(d=6), {"view1": Scale(1.0), "view2": Scale(0.5)})
    teacher = Teacher(model.student, momentum=0.9, preserve_prob=0.0, norm="eman", seed=0)
    with torch.no_grad():
        for p in teacher.module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = images(6, 20)
    params = list(model.student.parameters()) + list(model.predictor.parameters())
    loss, _ = model.loss({"x": x}, teacher, 0)
    ours = grads_of(loss, params)
    v1, v2 = x / 255.0, x / 255.0 * 0.5
    with torch.no_grad():
        z1, z2 = teacher(v1), teacher(v2)
    online = model.predictor(model.student(v1)), model.predictor(model.student(v2))
    ref = ref_byol_loss(online[0], z2) + ref_byol_loss(online[1], z1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert_same_grads(ours, grads_of(ref, params))
