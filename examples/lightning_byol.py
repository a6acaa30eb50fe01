"""BYOL with a Spatial-Temporal Smoothing teacher on scikit-learn's 8x8 digits, in PyTorch Lightning.

    pip install 'stsmooth[lightning]'
    python examples/lightning_byol.py                 # 15 epochs, about a minute on 2 CPU cores
    python examples/lightning_byol.py --epochs 1 --batches 2 --out /tmp/run

The Lightning part is ordinary user code; stsmooth adds one callback (``TeacherCallback``),
which builds ``self.teacher`` from ``self.student`` and updates it after every optimiser step
(paper 000 Eq. 3 with p = 0.7, layer-wise; BYOL's cosine momentum schedule; EMAN BatchNorm).
"""

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stsmooth import augment, data, evaluate, models, schedules
from stsmooth.integrations.lightning import TeacherCallback

DIGITS_VIEW = dict(flip=False, color=False, blur=False, crop_scale=(0.7, 1.0))  # 8x8 gray digits


def byol_loss(prediction, target):  # BYOL Eq. 2
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=1)).mean()


class BYOL(L.LightningModule):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        backbone = models.build("digits_cnn", width=8)
        # BYOL's heads (Linear -> BN -> ReLU -> Linear), scaled down from 4096 -> 256 for 8x8 digits
        self.student = nn.Sequential(backbone, models.MLP(backbone.num_features, 128, 32, bn=True))
        self.predictor = models.MLP(32, 128, 32, bn=True)
        self.view1 = augment.build("byol1", 8, **DIGITS_VIEW)
        self.view2 = augment.build("byol2", 8, **DIGITS_VIEW)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        images, _ = batch
        v1, v2 = self.view1(images), self.view2(images)
        # self.teacher is set by TeacherCallback: a smoothed copy of self.student, called without autograd
        loss = byol_loss(self.predictor(self.student(v1)), self.teacher(v2)) \
            + byol_loss(self.predictor(self.student(v2)), self.teacher(v1))
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        params = [*self.student.parameters(), *self.predictor.parameters()]
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=1e-4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batches", type=int, default=None, help="batches per epoch (default: all)")
    parser.add_argument("--out", default="runs/lightning_byol")
    args = parser.parse_args()

    L.seed_everything(0)
    train, test = data.load("digits", split="train"), data.load("digits", split="test")
    loader = DataLoader(TensorDataset(train.images, train.labels), batch_size=128, shuffle=True, drop_last=True)
    total_steps = args.epochs * (args.batches or len(loader))
    callback = TeacherCallback("student", momentum=schedules.cosine(0.9, final=1.0, total_steps=total_steps),
                               preserve_prob=0.7, granularity="layer", norm="eman", seed=0)
    model = BYOL()
    trainer = L.Trainer(max_epochs=args.epochs, limit_train_batches=args.batches, accelerator="cpu",
                        callbacks=[callback], default_root_dir=args.out, log_every_n_steps=1)
    trainer.fit(model, loader)

    backbone = model.teacher.module[0]  # the teacher's backbone, without its projector
    top1 = evaluate.knn(*evaluate.labelled_features(backbone, train), *evaluate.labelled_features(backbone, test))
    print(f"teacher updates: {model.teacher.step}")
    print(f"teacher kNN top-1: {top1['top1']:.1f}%")


if __name__ == "__main__":
    main()
