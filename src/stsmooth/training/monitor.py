"""Evaluation during training: accuracy of teacher and student, teacher smoothness.

Every ``eval.every_epochs`` epochs (and at the end):

* self-supervised: kNN top-1 / top-5 (k=20, t=0.07; 003 §5) of the teacher's and
  the student's backbone features, bank = training split, queries = test split;
* semi-supervised: top-1 / top-5 of the teacher's and the student's classifier
  on the test split;
* teacher smoothness (000 Fig. 3): mean squared difference of the teacher's
  parameters, and of its outputs on a fixed probe batch, between this
  evaluation and the previous one.

The previous snapshot is part of the checkpoint (:meth:`Monitor.state_dict`),
so a resumed run reports the same smoothness as an uninterrupted one. Under
DDP each rank extracts the features of its share and the shares are gathered.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from stsmooth import evaluate
from stsmooth.core.distributed import all_gather_concat, rank, world_size
from stsmooth.data import FolderLoader, epoch_order
from stsmooth.models.encoder import to_float
from stsmooth.training.run_data import subset


class Features(nn.Module):
    """A student-shaped network seen as its backbone: images -> (B, num_features).

    Uses ``net.features`` when the network has it, else ``net.backbone`` after
    the network's own ``normalize`` (the methods' convention).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.net, "features"):
            return self.net.features(x)
        normalize = getattr(self.net, "normalize", None)
        x = to_float(x)
        return self.net.backbone(normalize(x) if normalize is not None else x)


@contextlib.contextmanager
def kept_modes(*modules: nn.Module):
    """Restores every submodule's train/eval flag on exit (evaluation switches them)."""
    saved = [[(m, m.training) for m in module.modules()] for module in modules]
    try:
        yield
    finally:
        for flags in saved:
            for m, training in flags:
                m.training = training


def _share(images_set) -> tuple[object, torch.Tensor, torch.Tensor]:
    """This rank's share of a set in a fixed order: (images or loader, labels, indices).

    Shares are padded to equal sizes (as DistributedSampler does); in-memory
    sets give a uint8 tensor, folders a FolderLoader streaming the share.
    """
    idx = epoch_order(len(images_set), shuffle=False, drop_last=False, rank=rank(), world_size=world_size())
    if hasattr(images_set, "images"):
        if world_size() == 1:
            return images_set.images, images_set.labels, idx
        return images_set.images[idx], images_set.labels[idx], idx
    loader = FolderLoader(images_set, 256, shuffle=False, drop_last=False, rank=rank(), world_size=world_size())
    return loader, images_set.labels[idx], idx


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent. logits (N, K), labels (N,)."""
    out = {}
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top.eq(labels[:, None])
    for k in ks:
        out[f"top{k}"] = hit[:, :k].any(dim=1).float().mean().item() * 100.0
    return out


class Monitor:
    """Evaluates a model and its teacher; keeps the smoothness snapshot.

    Args:
        kind: ``"self_supervised"`` (kNN) or ``"semi_supervised"`` (classifier accuracy).
        bank: ImageSet or FolderSet whose labelled images form the kNN bank (self-supervised only).
        test: ImageSet or FolderSet of queries / test images.
        transform: evaluation recipe (uint8 -> [0, 1] floats at the training size).
        device: where features are computed.
        cfg: an ``EvalConfig`` (knn_k, knn_t, bank_size, probe_size, batch_size).
        num_classes: classes of the test set.
        seed: picks the bank subset when ``bank_size`` is set.
    """

    def __init__(self, kind: str, bank, test, transform: nn.Module, device, cfg, num_classes: int, seed: int = 0):
        self.kind, self.cfg, self.device, self.transform = kind, cfg, device, transform
        self.num_classes = num_classes
        self.test = test
        self.bank = None
        if kind == "self_supervised":
            keep = (bank.labels >= 0).nonzero().flatten()
            if 0 < cfg.bank_size < len(keep):
                g = torch.Generator().manual_seed(seed)
                keep = keep[torch.randperm(len(keep), generator=g)[: cfg.bank_size].sort().values]
            self.bank = subset(bank, keep) if len(keep) < len(bank) else bank
        if hasattr(test, "images"):
            probe = test.images[: cfg.probe_size]
        else:
            probe = torch.stack([test[i][0] for i in range(min(cfg.probe_size, len(test)))])
        self.probe = probe.to(device)
        self.previous: dict | None = None

    def _run(self, net: nn.Module, images_set) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, idx = _share(images_set)
        out = evaluate.extract_features(net, images, batch_size=self.cfg.batch_size, device=self.device,
                                        transform=self.transform)
        if world_size() == 1:
            return out.float(), labels.to(out.device)
        out = all_gather_concat(out.to(self.device).float())
        labels = all_gather_concat(labels.to(self.device))
        idx = all_gather_concat(idx.to(self.device))
        # Undo the padding and the striding: row i of the result is image i of the set.
        where = torch.empty(len(images_set), dtype=torch.long, device=self.device)
        where[idx] = torch.arange(len(idx), device=self.device)
        return out[where], labels[where]

    def _accuracy(self, net: nn.Module, name: str) -> dict[str, float]:
        if self.kind == "self_supervised":
            feats = Features(net)
            bank, bank_y = self._run(feats, self.bank)
            query, query_y = self._run(feats, self.test)
            res = evaluate.knn(bank, bank_y, query, query_y, k=self.cfg.knn_k, temperature=self.cfg.knn_t,
                               num_classes=self.num_classes)
            return {f"{name}_knn_top1": res["top1"], f"{name}_knn_top5": res["top5"]}
        logits, labels = self._run(net, self.test)
        res = topk_accuracy(logits, labels)
        return {f"{name}_top1": res["top1"], f"{name}_top5": res["top5"]}

    @torch.no_grad()
    def evaluate(self, student: nn.Module, teacher) -> dict[str, float]:
        """Accuracies of ``teacher.module`` and ``student`` and the teacher's smoothness.

        Returns:
            e.g. ``{"teacher_knn_top1", "teacher_knn_top5", "student_knn_top1",
            "student_knn_top5", "param_msd", "output_msd"}``; the two MSDs are
            NaN at the first evaluation.
        """
        module = teacher.module
        with kept_modes(student, module):
            metrics = self._accuracy(module, "teacher")
            metrics.update(self._accuracy(student, "student"))
            module.eval()
            outputs = module(self.transform(self.probe)).float().cpu()
        params = torch.cat([p.detach().float().reshape(-1).cpu() for p in module.parameters()])
        nan = float("nan")
        if self.previous is not None:
            metrics["param_msd"] = (params - self.previous["params"]).pow(2).mean().item()
            metrics["output_msd"] = (outputs - self.previous["outputs"]).pow(2).mean().item()
        else:
            metrics["param_msd"] = metrics["output_msd"] = nan
        self.previous = {"params": params, "outputs": outputs}
        return metrics

    def state_dict(self) -> dict:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.previous = state.get("previous")
