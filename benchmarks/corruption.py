"""Benchmark of the ImageNet-C corruptions (stsmooth.evaluate.corruption_ops) and of the evaluation.

Setting of issue 11. Prints

* images per second generating each of the 15 corruptions (all 5 severities,
  the table of the size: CIFAR-10-C at 28 px, ImageNet-C at 224 px) on the CPU
  with ``--threads`` threads (default 2), for 1x28x28 and 3x224x224 pictures;
* the whole evaluation of 10,000 1x28x28 test pictures over the 75 cells,
  as ``stsmooth eval corruption`` runs it on a self-supervised Fashion-MNIST
  checkpoint: teacher and student ``fmnist_cnn`` backbones (width 16, the
  study's network) each with a linear probe, every cell generated and
  classified by both (target: under 3 minutes on 2 cores); and, apart, fitting
  the two probes on 60,000 clean training features (80 epochs);
* with ``--parts gpu``, the 224- and 28-px generation and the evaluation on the CUDA device.

The pictures are synthetic (smooth colour fields with sharp ellipses) and the
networks untrained: the timings do not depend on what the pictures show.
Wall and process-CPU seconds are printed, since the machine may be shared.
Run: ``python benchmarks/corruption.py`` (``--quick``: fewer pictures).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from stsmooth.data import ImageSet
from stsmooth.evaluate.corruption import CORRUPTIONS, SEVERITIES, corrupt, corruption
from stsmooth.evaluate.features import eval_mode, extract_features, inference_copy
from stsmooth.evaluate.linear import train_linear
from stsmooth.models import build


def scenes(n: int, size: int, channels: int, seed: int = 0) -> torch.Tensor:
    """(n, channels, size, size) uint8: smooth colour fields with three sharp-edged ellipses."""
    g = torch.Generator().manual_seed(seed)
    x = nn.functional.interpolate(torch.rand(n, channels, 4, 4, generator=g), size=(size, size), mode="bicubic",
                                  align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    for _ in range(3):
        c = torch.rand(n, 2, 1, 1, generator=g) * size
        r = (0.1 + 0.25 * torch.rand(n, 2, 1, 1, generator=g)) * size
        inside = ((yy - c[:, 0]) / r[:, 0]) ** 2 + ((xx - c[:, 1]) / r[:, 1]) ** 2 < 1
        x = torch.where(inside[:, None], torch.rand(n, channels, 1, 1, generator=g), x)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def timed(fn, sync=None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    if sync:
        sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if sync:
        sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def generation(images: torch.Tensor, batch: int, label: str) -> float:
    sync = torch.cuda.synchronize if images.device.type == "cuda" else None
    corrupt(images[:2], "glass_blur", 1)  # warm-up
    print(f"\n{label}: images/s per corruption (5 severities, batches of {batch}; wall, and per CPU-second)")
    total = 0.0
    for name in CORRUPTIONS:
        def run(name=name):
            for s in SEVERITIES:
                for i in range(0, len(images), batch):
                    corrupt(images[i : i + batch], name, s, seed=s)
        wall, cpu = timed(run, sync)
        total += wall
        n = 5 * len(images)
        print(f"  {name:18s} {n / wall:9.0f} /s   ({n / max(cpu, 1e-9):9.0f} per CPU-s)")
    print(f"  all 75 cells: {total:.1f} s for {len(images)} images each -> {75 * len(images) / total:.0f} images/s")
    return total


def evaluation(n: int, n_train: int, device, which=("teacher", "student"), plain: bool = False) -> None:
    torch.manual_seed(0)
    test = ImageSet(scenes(n, 28, 1, seed=1), torch.randint(0, 10, (n,)), [str(k) for k in range(10)])
    nets = {name: build("fmnist_cnn", num_classes=0, in_channels=1).to(device) for name in which}
    train = scenes(n_train, 28, 1, seed=2)
    train_labels = torch.randint(0, 10, (n_train,))
    heads = {}

    def fit():
        for name, net in nets.items():
            feats = extract_features(net, train, batch_size=1000, device=device)
            heads[name] = train_linear(feats, train_labels.to(device), 10, epochs=80)

    wall, cpu = timed(fit)
    print(f"\nfitting the linear probes of {' and '.join(nets)} on {n_train} clean training features "
          f"(80 epochs): {wall:.1f} s wall, {cpu:.1f} s CPU")

    def evaluate():
        # as stsmooth eval corruption runs it: the probes score inference copies of the nets
        fast = nets if plain else {name: inference_copy(net) for name, net in nets.items()}
        predictors = {name: (lambda x, net=net, head=heads[name]: head(net(x.float() / 255 if x.dtype == torch.uint8
                                                                           else x)))
                      for name, net in fast.items()}
        corruption(predictors, test, device=device)

    with eval_mode(*nets.values()):
        wall, cpu = timed(evaluate)
        gen_wall, _ = timed(lambda: [corrupt(test.images, c, s, seed=s) for c in CORRUPTIONS for s in SEVERITIES])
    print(f"evaluation of {n} 1x28x28 test images over 75 cells + clean, {' and '.join(nets)}"
          f"{' (plain networks, no inference_copy)' if plain else ''}: "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU (target < 180 s wall on 2 cores); generating alone: {gen_wall:.1f} s")


PARTS = ("28", "224", "evaluation", "gpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="fewer pictures (a smoke run, not the issue's setting)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
    p.add_argument("--train", type=int, default=None, help="clean training images for the probes (default 60,000)")
    p.add_argument("--which", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    p.add_argument("--plain", action="store_true", help="evaluate the networks as they are (no inference_copy)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n28, n224, n_eval, n_train = (1000, 16, 1000, 6000) if args.quick else (10000, 64, 10000, 60000)
    n_train = args.train or n_train
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if "28" in args.parts:
        generation(scenes(n28, 28, 1), 10000, f"CPU, {n28} x 1x28x28 (CIFAR-10-C parameters)")
    if "224" in args.parts:
        generation(scenes(n224, 224, 3), 32, f"CPU, {n224} x 3x224x224 (ImageNet-C parameters)")
    if "evaluation" in args.parts:
        evaluation(n_eval, n_train, torch.device("cpu"), args.which, args.plain)
    if "gpu" in args.parts:  # the same on CUDA: 224-px generation, and the 28-px evaluation
        if not torch.cuda.is_available():
            raise SystemExit("--parts gpu needs a CUDA device; none is visible")
        dev = torch.device("cuda")
        name = torch.cuda.get_device_name()
        generation(scenes(256, 224, 3).to(dev), 128, f"GPU ({name}), 256 x 3x224x224 (ImageNet-C parameters)")
        generation(scenes(n28, 28, 1).to(dev), 10000, f"GPU ({name}), {n28} x 1x28x28 (CIFAR-10-C parameters)")
        evaluation(n_eval, n_train, dev, args.which, args.plain)


if __name__ == "__main__":
    main()
