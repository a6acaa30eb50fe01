"""Training throughput of BYOL + STS (ResNet-18 at 32x32, or any recipe and size), and where the step time goes.

Measures, on random uint8 CIFAR-sized images held on the device (as DeviceLoader
holds them):

* images/s of the full :func:`stsmooth.training.train.train_step` (augment both views,
  student + predictor forward/backward, teacher forward, SGD step, teacher update);
* the time of the two augmentations and of one teacher update, each measured
  alone on the same batch, as shares of the step time;
* the time to gather a batch from the in-memory set (the "data loading").

Usage:
    python benchmarks/train_throughput.py                    # CPU: batch 64
    python benchmarks/train_throughput.py --batch-size 256 --steps 50 --compile   # CUDA
    python benchmarks/train_throughput.py --recipe byol_sts_imagenet --image-size 224 --granularity neuron  # R50
Prints one table; nothing is asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from stsmooth.data import DeviceLoader
from stsmooth.methods import METHODS
from stsmooth.training import builder, config, optim, parallel, train


def timed(fn, device: torch.device, repeat: int) -> float:
    """Mean seconds of ``fn()`` over ``repeat`` calls (CUDA-synchronised)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 64 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA, 5 on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the student")
    p.add_argument("--granularity", default="layer")
    p.add_argument("--recipe", default="byol_sts_cifar10", help="a packaged recipe name or a YAML path")
    p.add_argument("--image-size", type=int, default=32, help="square images of this size (224: ImageNet)")
    p.add_argument("--preserve-prob", type=float, default=0.7, help="p of the timed updates (0: TMA)")
    args = p.parse_args()

    device = builder.resolve_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or (256 if cuda else 64)
    steps = args.steps or (50 if cuda else 5)
    cfg = config.load(args.recipe, [f"optim.batch_size={batch}", f"compile={str(args.compile).lower()}",
                                    f"teacher.granularity={args.granularity}", "progress=false"])
    size = args.image_size
    meta = {"in_channels": 3, "num_classes": 10, "image_size": size,
            "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
    model, teacher, augment = builder.build_model(cfg, METHODS[cfg.method], meta, device)
    optimizer = optim.build(cfg.optim, model)
    wrapped = parallel.wrap(model, device, compile=cfg.compile)
    images = torch.randint(0, 256, (batch * 8, 3, size, size), dtype=torch.uint8)
    loader = DeviceLoader(images, batch, seed=0, device=device)
    x = next(iter(loader))[0]
    autocast = torch.bfloat16 if cuda and cfg.amp else None
    counter = [0]

    def step():
        train.train_step(model, teacher, optimizer, {"x": x}, counter[0], 0.99, args.preserve_prob, wrapped=wrapped,
                         autocast=autocast)
        counter[0] += 1

    def aug():
        augment["view1"](x)
        augment["view2"](x)

    def update():
        teacher.update(model.student, momentum=0.99, preserve_prob=args.preserve_prob)

    def gather():
        for _ in loader:
            pass

    model.train()
    for _ in range(3 if not args.compile else 10):  # warm-up (and compilation)
        step()
    syncs = None
    if cuda:  # count the host-device synchronisations of one step (issue 12: none expected)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        # the warnings sync debug mode gives for a synchronising call (not its own "prototype" notice)
        syncs = [str(w.message).splitlines()[0] for w in caught
                 if "synchroniz" in str(w.message).lower() and "prototype" not in str(w.message)]
    t_step = timed(step, device, steps)
    t_aug = timed(aug, device, steps)
    t_update = timed(update, device, max(steps, 20))
    t_gather = timed(gather, device, 3) / len(loader)
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU, " \
                                                             f"{torch.get_num_threads()} threads"
    print(f"{cfg.method} + STS (p={args.preserve_prob}, {args.granularity}), {cfg.model.name}, {size}x{size}, batch {batch}, "
          f"{'bf16 autocast, channels_last' if autocast else 'fp32'}{', compiled' if args.compile else ''}")
    print(f"device: {name}; torch {torch.__version__}")
    print(f"{'images/s':<28}{batch / t_step:10.1f}")
    print(f"{'step time (ms)':<28}{t_step * 1e3:10.2f}")
    print(f"{'augmentation, 2 views (ms)':<28}{t_aug * 1e3:10.2f}   {100 * t_aug / t_step:5.1f} % of the step")
    print(f"{'teacher update (ms)':<28}{t_update * 1e3:10.2f}   {100 * t_update / t_step:5.1f} % of the step")
    print(f"{'batch gather (ms)':<28}{t_gather * 1e3:10.2f}   {100 * t_gather / t_step:5.1f} % of the step")
    if syncs is not None:
        print(f"{'host syncs in one step':<28}{len(syncs):10d}" + (f"   first: {syncs[0]}" if syncs else ""))


if __name__ == "__main__":
    main()
