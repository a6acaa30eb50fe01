"""FixMatch with an STS teacher on scikit-learn's 8x8 digits, in a Hugging Face ``accelerate`` loop.

    pip install stsmooth accelerate
    python examples/accelerate_fixmatch.py                      # 300 steps, about a minute on CPU
    accelerate launch --num_processes 2 --cpu examples/accelerate_fixmatch.py

The plain API in someone else's loop: one ``Teacher``, one ``teacher.update`` after each
optimiser step that really happened. The teacher makes the pseudo-labels (the EMA-teacher
FixMatch of paper 003 Fig. 2, with paper 000's STS rule, p = 0.5) and is the model evaluated.
"""

import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from stsmooth import Teacher, augment, data, models, schedules
from stsmooth.methods.fixmatch import pseudo_labels, unlabeled_loss

WEAK, STRONG = augment.build("fixmatch_weak", 8, flip=False), augment.build("fixmatch_strong", 8, flip=False)
EVAL = augment.build("eval", 8)


def forever(loader):
    while True:
        yield from loader


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--labels-per-class", type=int, default=4)
    parser.add_argument("--mu", type=int, default=7, help="unlabeled images per labeled one (FixMatch: 7)")
    parser.add_argument("--accumulate", type=int, default=1, help="batches per optimiser step")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=args.accumulate)
    torch.manual_seed(0)
    train, test = data.load("digits", split="train"), data.load("digits", split="test")
    labeled, unlabeled = data.split_labeled(train.labels, per_class=args.labels_per_class, seed=0, unlabeled="all")
    x_l, y_l = train.images[labeled], train.labels[labeled]
    labeled_loader = DataLoader(TensorDataset(x_l, y_l), batch_size=16, shuffle=True)
    unlabeled_loader = DataLoader(TensorDataset(train.images[unlabeled]), batch_size=16 * args.mu, shuffle=True,
                                  drop_last=True)
    model = models.build("digits_cnn", num_classes=10, width=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model, optimizer, labeled_loader, unlabeled_loader = accelerator.prepare(
        model, optimizer, labeled_loader, unlabeled_loader)
    # after prepare: Teacher unwraps DDP, copies the model on its device, agrees on the seed across processes
    teacher = Teacher(model, momentum=0.95, preserve_prob=0.5, granularity="layer", norm="eman", seed=0)
    # Mean Teacher's warm-up min(1 - 1/(k+1), m); m = 0.95 is tuned for a short run (FixMatch: 0.999)
    momentum = schedules.mean_teacher_warmup(0.95)

    step, seen, batches = 0, 0, zip(forever(labeled_loader), forever(unlabeled_loader))
    while step < args.steps:
        (x, y), (u,) = next(batches)
        seen += 1
        with accelerator.accumulate(model):
            labels, mask, _ = pseudo_labels(teacher(WEAK(u)), threshold=0.95)  # FixMatch Eq. 3, from the teacher
            logits = model(torch.cat([WEAK(x), STRONG(u)]))
            loss = F.cross_entropy(logits[: len(x)], y) + unlabeled_loss(logits[len(x):], labels, mask)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        # only after a step that happened: not while accumulating, not when the AMP scaler skipped it
        if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
            teacher.update(model, momentum=momentum(step))  # paper 000 Eq. 3
            step += 1

    teacher.eval()
    model.eval()
    images = EVAL(test.images.to(accelerator.device))
    with torch.no_grad():
        top1 = {name: (net(images).argmax(1).cpu() == test.labels).float().mean().item() * 100
                for name, net in (("teacher", teacher), ("student", model))}
    accelerator.print(f"teacher updates: {teacher.step} ({seen} batches)")
    accelerator.print(f"test top-1 with {args.labels_per_class} labels per class: teacher {top1['teacher']:.1f}%, "
                      f"student {top1['student']:.1f}%")


if __name__ == "__main__":
    main()
