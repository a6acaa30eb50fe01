"""Batches gathered on the device from an in-memory uint8 tensor.

A dataset that fits in memory (digits, MNIST, CIFAR, SVHN, STL-10) is moved to
the training device once; each epoch draws one permutation from a
``torch.Generator`` seeded by ``(seed, epoch)`` and every batch is a single
``index_select`` of images and labels. There is no per-sample Python and no
worker process, and the order of an epoch is a pure function of
``(seed, epoch)`` (and of ``rank``/``world_size`` when sharded), so a resumed
run sees exactly the batches it would have seen (augmentation then runs on the
batch, on the device, with the recipes of paper 000 §4.1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stsmooth.data.imageset import UNLABELED, ImageSet


def order_seed(seed: int, epoch: int) -> int:
    """Seed of the data order of ``epoch``: 63 bits mixed from ``(seed, epoch)`` by NumPy's SeedSequence.

    Unlike ``seed + epoch`` it gives unrelated streams for (0, 1) and (1, 0). The
    same on every rank (the shards are cut from one permutation); the per-rank
    seed of the augmentations is :func:`stsmooth.training.train.random_state_seed`.
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed ({seed}) and epoch ({epoch}) must be >= 0")
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def epoch_order(n: int, seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_last: bool = True, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Indices visited by one rank in one epoch.

    Args:
        n: dataset size.
        seed, epoch: the permutation is a pure function of these.
        shuffle: False visits 0..n-1 in order.
        drop_last: with ``world_size > 1``, True drops the tail so that every
            rank gets ``n // world_size`` indices; False pads by wrapping
            around to ``ceil(n / world_size)`` each (as DistributedSampler does).
        rank, world_size: this process's shard (every ``world_size``-th index).

    Returns:
        int64 CPU tensor of indices.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
    if shuffle:
        g = torch.Generator().manual_seed(order_seed(seed, epoch))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    if world_size > 1:
        per_rank = n // world_size if drop_last else math.ceil(n / world_size)
        total = per_rank * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[:total][rank::world_size]
    return order


def _wide_rows(images: torch.Tensor) -> torch.Tensor:
    """A (N, row) view of uint8 images in the widest integer type that divides a row.

    Gathering 8-byte words instead of single bytes makes the gather of a
    CIFAR batch about 1.5x faster (torch 2.13 CPU, one thread: 0.73 ms ->
    0.45 ms for 512 × 3×32×32); the bytes are unchanged.
    """
    rows = images.reshape(len(images), -1)
    for dtype, width in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)):
        if rows.shape[1] % width == 0 and rows.storage_offset() % width == 0:
            return rows.view(dtype)
    return rows


class DeviceLoader:
    """Iterates ``(images uint8 (B, C, H, W), labels int64 (B,))`` on ``device``.

    Args:
        data: an :class:`ImageSet`, a uint8 tensor (N, C, H, W) (labels are
            then all -1) or a tuple ``(images, labels)``.
        batch_size: images per batch.
        shuffle: draw a new permutation per epoch (from ``(seed, epoch)``).
        drop_last: drop the last incomplete batch.
        seed: base seed of the order.
        device: where the whole set is copied once and batches are gathered.
        rank, world_size: shard for data-parallel training.

    The epoch is set with :meth:`set_epoch` (it does not advance by itself,
    so that iterating twice gives the same batches, as with
    ``DistributedSampler``).
    """

    def __init__(self, data, batch_size: int, shuffle: bool = True, drop_last: bool = True, seed: int = 0, device="cpu", *, rank: int = 0, world_size: int = 1):
        if isinstance(data, ImageSet):
            images, labels = data.images, data.labels
        elif isinstance(data, torch.Tensor):
            images, labels = data, torch.full((len(data),), UNLABELED, dtype=torch.int64)
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            images, labels = data
        else:
            raise ValueError(f"DeviceLoader data must be an ImageSet, a uint8 tensor or (images, labels); got {type(data).__name__}")
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"DeviceLoader images must be a uint8 tensor (N, C, H, W); got {getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        labels = torch.as_tensor(labels).to(torch.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"DeviceLoader labels must have shape ({len(images)},); got {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        self._rows = _wide_rows(self.images)
        # On CPU, NumPy's single-threaded gather: torch's OpenMP index_select
        # slows ~40x when the cores are shared (measured 0.45 vs 20 ms per
        # CIFAR batch with 2 busy cores); NumPy stays at ~0.45 ms either way.
        self._cpu = (self._rows.numpy(), self.labels.numpy()) if self.device.type == "cpu" else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.num_samples = len(epoch_order(len(self.images), self.seed, 0, False, drop_last, self.rank, self.world_size))
        if len(self) == 0 and len(self.images) > 0:
            raise ValueError(f"batch_size {batch_size} with drop_last=True gives no batch from {self.num_samples} images per rank")

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration follows."""
        self.epoch = int(epoch)

    def order(self) -> torch.Tensor:
        """Indices of the current epoch (int64, CPU)."""
        return epoch_order(len(self.images), self.seed, self.epoch, self.shuffle, self.drop_last, self.rank, self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        shape = self.images.shape[1:]
        if self._cpu is not None:
            rows, labels = self._cpu
            order = self.order().numpy()
            for b in range(len(self)):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield torch.from_numpy(rows[idx]).view(torch.uint8).view(-1, *shape), torch.from_numpy(labels[idx])
            return
        order = self.order().to(self.device, non_blocking=True)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = self._rows.index_select(0, idx).view(torch.uint8).view(-1, *shape)
            yield batch, self.labels.index_select(0, idx)
