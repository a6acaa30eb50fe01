"""A tiny LightningModule for the TeacherCallback tests (shared with the DDP worker)."""

import lightning.pytorch as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def student_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def loader(batches: int, batch_size: int = 4, seed: int = 1) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    n = batches * batch_size
    data = TensorDataset(torch.randn(n, 4, generator=g), torch.randn(n, 2, generator=g))
    return DataLoader(data, batch_size=batch_size, shuffle=False)


class Net(L.LightningModule):
    """Regress targets and the teacher's outputs (the teacher is called in the loss).

    Args:
        nan_batches: batches whose loss is multiplied by NaN (all gradients non-finite).
        none_batches: batches whose ``training_step`` returns ``None``.
        skip_nonfinite: ``optimizer_step`` skips ``optimizer.step()`` on non-finite gradients.
    """

    def __init__(self, nan_batches=(), none_batches=(), skip_nonfinite=False):
        super().__init__()
        self.student = student_net()
        self.lr = 0.1
        self.nan_batches, self.none_batches, self.skip_nonfinite = set(nan_batches), set(none_batches), skip_nonfinite

    def training_step(self, batch, batch_idx):
        if batch_idx in self.none_batches:
            return None
        x, y = batch
        out = self.student(x)
        loss = ((out - y) ** 2).mean() + 0.5 * ((out - self.teacher(x)) ** 2).mean()
        return loss * float("nan") if batch_idx in self.nan_batches else loss

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        if not self.skip_nonfinite:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer_closure()  # forward + backward
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if all(bool(torch.isfinite(g).all()) for g in grads):
            optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    options.update(kwargs)
    return L.Trainer(**options)
