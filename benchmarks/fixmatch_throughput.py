"""FixMatch throughput: images/s of WRN-28-2 at 32x32, 64 labeled + 448 unlabeled per step.

Times whole training steps (augmentation, student forward/backward, optimiser
step, teacher update; 000 §4.1's setting: SGD Nesterov, mu = 7) and, inside
the same steps, the time spent in the augmentation modules (flip/translate for
the weak view, RandAugment + Cutout for the strong one, on the batch's device)
and in ``Teacher.update``. Prints the measured numbers and shares; asserts
nothing.

    python benchmarks/fixmatch_throughput.py                  # CPU, classic FixMatch + STS teacher
    python benchmarks/fixmatch_throughput.py --device cuda --steps 20
    python benchmarks/fixmatch_throughput.py --pseudo-labels-from teacher --preserve-prob 0
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from stsmooth import Teacher, augment, models
from stsmooth.methods import fixmatch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall time of a module's forward calls through hooks."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.total, self._t0, self.device = 0.0, 0.0, device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        sync(self.device)
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        sync(self.device)
        self.total += time.perf_counter() - self._t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--labeled", type=int, default=64, help="labeled images per step (000 §4.1: 64)")
    p.add_argument("--mu", type=int, default=7, help="unlabeled per labeled image (000 §4.1: 7)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = leave as is")
    p.add_argument("--pseudo-labels-from", default="student", choices=fixmatch.PSEUDO_LABEL_SOURCES)
    p.add_argument("--momentum", type=float, default=0.999)
    p.add_argument("--preserve-prob", type=float, default=0.5, help="0.5 = STS (000 §4); 0 = TMA")
    p.add_argument("--granularity", default="layer")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    aug = {"weak": augment.build("fixmatch_weak", args.size), "strong": augment.build("fixmatch_strong", args.size),
           "normalize": augment.Normalize("cifar10")}
    cfg = fixmatch.Config(pseudo_labels_from=args.pseudo_labels_from, mu=args.mu)
    model = fixmatch.build(cfg, models.build("wrn28_2", num_classes=0), 10, aug).to(device)
    teacher = Teacher(model.student, momentum=args.momentum, preserve_prob=args.preserve_prob,
                      granularity=args.granularity, norm="eman", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n_l, n_u = args.labeled, args.labeled * args.mu
    g = torch.Generator().manual_seed(0)
    batch = {"x_l": torch.randint(0, 256, (n_l, 3, args.size, args.size), dtype=torch.uint8, generator=g).to(device),
             "y_l": torch.randint(0, 10, (n_l,), generator=g).to(device),
             "x_u": torch.randint(0, 256, (n_u, 3, args.size, args.size), dtype=torch.uint8, generator=g).to(device)}
    weak, strong = Stopwatch(model.augment["weak"], device), Stopwatch(model.augment["strong"], device)

    def step(k: int) -> float:
        loss, _ = model.loss(batch, teacher, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        t0 = time.perf_counter()
        teacher.update(model.student)
        sync(device)
        return time.perf_counter() - t0

    for k in range(args.warmup):
        step(k)
    weak.total = strong.total = 0.0
    t_teacher = 0.0
    sync(device)
    t0 = time.perf_counter()
    for k in range(args.steps):
        t_teacher += step(args.warmup + k)
    total = time.perf_counter() - t0

    per_step = total / args.steps
    forwards = n_l + 2 * n_u  # weak x_l, weak x_u (student or teacher), strong x_u
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"FixMatch WRN-28-2 {args.size}x{args.size}, {n_l} labeled + {n_u} unlabeled per step, "
          f"pseudo-labels from {args.pseudo_labels_from}, teacher m={args.momentum} p={args.preserve_prob} "
          f"({args.granularity}), on {device.type} ({where}), torch {torch.__version__}")
    print(f"step time            {per_step * 1000:9.1f} ms  (mean of {args.steps} after {args.warmup} warm-up)")
    print(f"images/s (batch)     {(n_l + n_u) / per_step:9.1f}  ({n_l + n_u} images per step)")
    print(f"images/s (network)   {forwards / per_step:9.1f}  ({forwards} image passes per step: weak x_l, weak x_u, strong x_u)")
    aug_share = (weak.total + strong.total) / total
    print(f"augmentation share   {aug_share * 100:9.2f} %  (weak {weak.total / total * 100:.2f} %, "
          f"strong {strong.total / total * 100:.2f} %)")
    print(f"teacher update share {t_teacher / total * 100:9.2f} %  ({t_teacher / args.steps * 1000:.1f} ms per update)")


if __name__ == "__main__":
    main()
