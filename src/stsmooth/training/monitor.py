"""Evaluation during training: accuracy of teacher and student, teacher smoothness.

Every ``eval.every_epochs`` epochs (and at the end):

* methods scored by kNN (self-supervised): kNN top-1 / top-5 (k=20, t=0.07;
  003 §5) of the teacher's and the student's backbone features, bank =
  training split, queries = test split;
* methods scored by their classifier (semi-supervised): top-1 / top-5 of the
  teacher's and the student's classifier on the test split;
* teacher smoothness (000 Fig. 3): mean squared difference of the teacher's
  parameters, and of its outputs on a fixed probe batch, between this
  evaluation and the previous one (:mod:`stsmooth.evaluate.smoothness`).

The previous snapshot is part of the checkpoint (:meth:`Monitor.state_dict`),
so a resumed run reports the same smoothness as an uninterrupted one. Under
DDP each rank extracts the features of its share and the shares are gathered.
"""

from __future__ import annotations

import torch
from torch import nn

from stsmooth import evaluate
from stsmooth.core.distributed import all_gather_concat, rank, world_size
from stsmooth.data import FolderSet, ImageSet, loader_for
from stsmooth.errors import StsmoothError
from stsmooth.evaluate.features import eval_mode
from stsmooth.evaluate.metrics import topk_accuracy
from stsmooth.evaluate.smoothness import output_msd, param_msd, snapshot
from stsmooth.methods.contract import Kind
from stsmooth.training.config import EvalConfig


class Features(nn.Module):
    """A student-shaped network (or its teacher) seen as its backbone: images -> (B, num_features).

    Both students (:class:`~stsmooth.models.encoder.Encoder`,
    :class:`~stsmooth.methods.supervised.Classifier`) have ``features``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


#: images decoded from each evaluation folder at start-up, evenly spaced (first and last included)
EVAL_SAMPLE = 16


def check_eval_data(kind: Kind, bank: ImageSet | FolderSet | None, test: ImageSet | FolderSet) -> None:
    """Fails at start-up, not after training, on evaluation data that cannot be evaluated.

    Checks that the test set (and the kNN bank) hold labelled images and, for image
    folders, that an even sample of :data:`EVAL_SAMPLE` images decodes.

    Raises:
        StsmoothError: one line naming the set and what is wrong (the file, for an image).
    """
    sets = {"test (data.test_split)": test, **({"kNN bank (labelled training images)": bank} if kind.knn else {})}
    for name, images in sets.items():
        if images is None or len(images) == 0 or not bool((images.labels >= 0).any()):
            raise StsmoothError(f"evaluation data: the {name} set has no labelled image; nothing to evaluate on")
        if isinstance(images, FolderSet) and not images.skip_bad_images:
            for i in sorted(set(torch.linspace(0, len(images) - 1, min(EVAL_SAMPLE, len(images))).round().long().tolist())):
                try:
                    images[i]
                except ValueError as err:
                    raise StsmoothError(f"evaluation data ({name}): {err}; fix the folder before training "
                                        f"(or set data.skip_bad_images=true)") from None


class Monitor:
    """Evaluates a model and its teacher; keeps the smoothness snapshot.

    Args:
        kind: the method's :class:`~stsmooth.methods.contract.Kind` (``kind.knn``: kNN scores, else classifier).
        bank: ImageSet or FolderSet whose labelled images form the kNN bank (kNN only).
        test: ImageSet or FolderSet of queries / test images.
        transform: evaluation recipe (uint8 -> [0, 1] floats at the training size).
        device: where features are computed.
        cfg: the run's ``eval`` section (knn_k, knn_t, bank_size, probe_size, batch_size).
        num_classes: classes of the test set.
        seed: picks the bank subset when ``bank_size`` is set.
    """

    def __init__(self, kind: Kind, bank: ImageSet | FolderSet | None, test: ImageSet | FolderSet,
                 transform: nn.Module, device: torch.device, cfg: EvalConfig, num_classes: int, seed: int = 0):
        self.kind, self.cfg, self.device, self.transform = kind, cfg, device, transform
        self.num_classes = num_classes
        check_eval_data(kind, bank, test)
        self.test = test
        self.bank = None
        if kind.knn:
            keep = (bank.labels >= 0).nonzero().flatten()
            if 0 < cfg.bank_size < len(keep):
                g = torch.Generator().manual_seed(seed)
                keep = keep[torch.randperm(len(keep), generator=g)[: cfg.bank_size].sort().values]
            self.bank = bank.subset(keep) if len(keep) < len(bank) else bank
        # the first probe_size test images, read in-process
        first = loader_for(test, cfg.probe_size, shuffle=False, drop_last=False, num_workers=0)
        self.probe = next(iter(first))[0].to(device)
        self.previous: dict | None = None

    def _run(self, net: nn.Module, images_set: ImageSet | FolderSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs of ``net`` and labels, row i for image i of the set (each rank computes its share)."""
        share = loader_for(images_set, self.cfg.batch_size, shuffle=False, drop_last=False, device=self.device,
                           rank=rank(), world_size=world_size())
        out, labels = evaluate.extract_features(net, share, device=self.device, transform=self.transform,
                                                return_labels=True)
        if world_size() == 1:
            return out, labels
        out = all_gather_concat(out)
        labels = all_gather_concat(labels)
        idx = all_gather_concat(share.order().to(self.device))
        # Undo the padding and the striding: row i of the result is image i of the set.
        where = torch.empty(len(images_set), dtype=torch.long, device=self.device)
        where[idx] = torch.arange(len(idx), device=self.device)
        return out[where], labels[where]

    def _accuracy(self, net: nn.Module, name: str) -> dict[str, float]:
        if self.kind.knn:
            feats = Features(net)
            bank, bank_y = self._run(feats, self.bank)
            query, query_y = self._run(feats, self.test)
            res = evaluate.knn(bank, bank_y, query, query_y, k=self.cfg.knn_k, temperature=self.cfg.knn_t,
                               num_classes=self.num_classes)
        else:
            logits, labels = self._run(net, self.test)
            res = topk_accuracy(logits, labels)
        top1, top5 = self.kind.metrics
        return {f"{name}_{top1}": res["top1"], f"{name}_{top5}": res["top5"]}

    @torch.no_grad()
    def evaluate(self, student: nn.Module, teacher) -> dict[str, float]:
        """Accuracies of ``teacher.module`` and ``student`` and the teacher's smoothness.

        Returns:
            e.g. ``{"teacher_knn_top1", "teacher_knn_top5", "student_knn_top1",
            "student_knn_top5", "param_msd", "output_msd"}``; the two MSDs are
            NaN at the first evaluation.
        """
        module = teacher.module
        with eval_mode(student, module):
            metrics = self._accuracy(module, "teacher")
            metrics.update(self._accuracy(student, "student"))
            outputs = module(self.transform(self.probe)).float().cpu()
        params = snapshot(module)
        if self.previous is not None:
            metrics["param_msd"] = param_msd(params, self.previous["params"])
            metrics["output_msd"] = output_msd(outputs, self.previous["outputs"])
        else:
            metrics["param_msd"] = metrics["output_msd"] = float("nan")
        self.previous = {"params": params, "outputs": outputs}
        return metrics

    def state_dict(self) -> dict:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.previous = state.get("previous")
