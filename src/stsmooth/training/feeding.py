"""Training batches for the two kinds of method, as pure functions of the step.

* self-supervised: ``{"x": uint8 (B, C, H, W), "y": int64 (B,)}`` from one
  loader over the training split; an epoch is one pass.
* semi-supervised: ``{"x_l", "y_l", "x_u", "i_u"}``: B labeled images and mu x B
  unlabeled ones with their indices into the unlabeled set (per-sample state such
  as Temporal Ensembling's prediction ensemble is kept by index). The unlabeled
  loader defines the epoch (the labeled one, much smaller, cycles through its own
  passes), as in FixMatch.

Batches are the global batch split across ranks: every loader is sharded by
``(rank, world_size)`` (every ``world_size``-th index of one permutation), so
the union of the ranks' batches at a step is the single-process batch.

The order of any loader at any step depends only on ``(seed, pass)``, so a run
resumed at any step (``epoch(e, start=s)``) continues with exactly the same batches.
"""

from __future__ import annotations

from typing import Iterator

import torch

from stsmooth.data import loader_for


def cycle_from(loader, start_batch: int, with_index: bool = False) -> Iterator:
    """Endless batches of ``loader`` starting at overall batch index ``start_batch``.

    Pass ``e`` of the loader is ``set_epoch(e)``; batch ``i`` overall is batch
    ``i % len(loader)`` of pass ``i // len(loader)``. With ``with_index`` each
    batch gets a third item, the (B,) int64 indices of its images in the set:
    both loaders cut their pass's ``order()`` into consecutive batches.
    """
    n = len(loader)
    epoch, skip = divmod(start_batch, n)
    while True:
        loader.set_epoch(epoch)
        order = loader.order() if with_index else None
        # A DataLoader draws its workers' base seed from the global generator when its
        # iterator is made; that draw must not shift the augmentations' random stream,
        # which a mid-epoch resume restores exactly.
        with torch.random.fork_rng(devices=[]):
            batches = iter(loader)
        for i, batch in enumerate(batches):
            if i >= skip:
                if with_index:
                    idx = order[i * loader.batch_size : (i + 1) * loader.batch_size]
                    batch = (*batch, idx.to(batch[0].device))
                yield batch
        epoch, skip = epoch + 1, 0


class SelfSupervisedFeed:
    """Batches ``{"x", "y"}`` from the training split.

    Args:
        train: ImageSet or FolderSet.
        batch_size: this rank's batch (global batch / world size).
        steps_per_epoch: 0 = one pass over the split.
    """

    def __init__(self, train, batch_size: int, seed: int, device, rank: int = 0, world_size: int = 1,
                 steps_per_epoch: int = 0, num_workers: int = 8):
        self.loader = loader_for(train, batch_size, seed=seed, device=device, rank=rank, world_size=world_size,
                                 num_workers=num_workers)
        self.steps_per_epoch = steps_per_epoch or len(self.loader)
        self.images_per_step = batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        """The batches of ``epoch`` from its step ``start`` on (``steps_per_epoch - start`` of them)."""
        stream = cycle_from(self.loader, epoch * self.steps_per_epoch + start)
        for _ in range(start, self.steps_per_epoch):
            x, y = next(stream)
            yield {"x": x, "y": y}


class SemiSupervisedFeed:
    """Batches ``{"x_l", "y_l", "x_u", "i_u"}`` from labeled and unlabeled sets.

    Args:
        labeled: ImageSet of the labeled subset.
        unlabeled: ImageSet of the unlabeled images (or None when ``mu == 0``).
        batch_size: this rank's labeled batch B (global / world size).
        mu: unlabeled images per labeled one; ``x_u`` has mu x B images, ``i_u``
            their indices into ``unlabeled``.
        steps_per_epoch: 0 = one pass over the unlabeled set (the labeled set when mu == 0).
    """

    def __init__(self, labeled, unlabeled, batch_size: int, mu: int, seed: int, device, rank: int = 0,
                 world_size: int = 1, steps_per_epoch: int = 0, num_workers: int = 8):
        if len(labeled) < batch_size * world_size:
            raise ValueError(f"{len(labeled)} labeled images are fewer than the labeled batch "
                             f"{batch_size * world_size} (optim.batch_size); lower optim.batch_size")
        self.labeled = loader_for(labeled, batch_size, seed=seed, device=device, rank=rank, world_size=world_size,
                                  num_workers=num_workers)
        self.unlabeled = None
        if mu > 0:
            # A different seed: the two orders must not be the same permutation.
            self.unlabeled = loader_for(unlabeled, mu * batch_size, seed=seed + 1, device=device, rank=rank,
                                        world_size=world_size, num_workers=num_workers)
        base = self.unlabeled if self.unlabeled is not None else self.labeled
        self.steps_per_epoch = steps_per_epoch or len(base)
        self.images_per_step = batch_size * (1 + mu)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        """The batches of ``epoch`` from its step ``start`` on."""
        first = epoch * self.steps_per_epoch + start
        labeled = cycle_from(self.labeled, first)
        unlabeled = cycle_from(self.unlabeled, first, with_index=True) if self.unlabeled is not None else None
        for _ in range(start, self.steps_per_epoch):
            x_l, y_l = next(labeled)
            batch = {"x_l": x_l, "y_l": y_l}
            if unlabeled is not None:
                x_u, _, i_u = next(unlabeled)
                batch["x_u"], batch["i_u"] = x_u, i_u
            yield batch

