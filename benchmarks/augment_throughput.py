"""Images per second of ``stsmooth.augment`` against ``kornia.augmentation``, per op and per view.

Usage:
    python benchmarks/augment_throughput.py [--sizes 32 224] [--batch 256] [--repeats 7] [--threads 2]
    python benchmarks/augment_throughput.py --recipes [--sizes 32] [--batch 512]   # every recipe, ours only

The comparison runs each op of the BYOL / MoCo v2 views (random resized crop,
horizontal flip, colour jitter, grayscale, Gaussian blur, solarise) and the
whole ``byol1``, ``byol2`` and ``moco`` views both ways on the same input.
Ours and kornia's are timed interleaved, one batch each in turn (the order
alternating between repeats), so load from other processes on a shared
machine falls on both alike; each figure is the median over ``--repeats``
batches after a warm-up batch. ``ratio`` is ours / kornia in images per second:
above 1 ours is faster. The ops take float input in [0, 1]; the views take
uint8, as ``DeviceLoader`` yields it, and both include the conversion.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import kornia.augmentation as K
import torch
from torch import nn

from stsmooth import augment
from stsmooth.augment import color, geometry
from stsmooth.augment.base import to_unit_float

Aug = Callable[[torch.Tensor], torch.Tensor]

# BYOL view settings (paper 000 §4.1; BYOL Table 6), as the byol1/byol2/moco recipes use
JITTER = (0.4, 0.4, 0.2, 0.1)
MOCO_JITTER = (0.4, 0.4, 0.4, 0.1)
SIGMA = (0.1, 2.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kornia_view(
    size: int, scale: tuple[float, float], jitter, blur_p: float, solarize_p: float
) -> nn.Module:
    """The same view as :class:`stsmooth.augment.View` built from kornia's modules."""
    k = color.blur_kernel_size(size)
    steps: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=scale, align_corners=False, p=1.0),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJiggle(*jitter, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((k, k), SIGMA, border_type="reflect", p=blur_p),
    ]
    if solarize_p > 0:
        # thresholds=0, additions=0: a fixed threshold of 0.5, as BYOL's solarise
        steps.append(K.RandomSolarize(0.0, 0.0, p=solarize_p))
    seq = nn.Sequential(*steps)
    return lambda x: seq(to_unit_float(x))


def op_pairs(size: int) -> dict[str, tuple[Aug, Aug]]:
    """name -> (ours, kornia's) for each op of the views, on float (B, 3, size, size)."""
    k = color.blur_kernel_size(size)

    def ours_solarize(x: torch.Tensor) -> torch.Tensor:  # the View's own two lines
        hit = torch.rand(x.shape[0], device=x.device) < 0.2
        return torch.where(hit[:, None, None, None], color.solarize(x, 0.5), x)

    return {
        "resized_crop": (
            lambda x: geometry.random_resized_crop(x, size),
            K.RandomResizedCrop((size, size), align_corners=False, p=1.0),
        ),
        "resized_crop(resample)": (
            lambda x: geometry.random_resized_crop(x, size),
            K.RandomResizedCrop(
                (size, size), align_corners=False, cropping_mode="resample", p=1.0
            ),
        ),
        "crop+flip": (
            lambda x: geometry.random_resized_crop(x, size, flip_p=0.5),
            nn.Sequential(
                K.RandomResizedCrop((size, size), align_corners=False, p=1.0),
                K.RandomHorizontalFlip(),
            ),
        ),
        "hflip": (
            lambda x: geometry.random_flip(x, 0.5),
            K.RandomHorizontalFlip(p=0.5),
        ),
        "color_jitter p=0.8": (
            lambda x: color.color_jitter(x, *JITTER, p=0.8),
            K.ColorJiggle(*JITTER, p=0.8),
        ),
        "grayscale p=0.2": (
            lambda x: color.random_grayscale(x, 0.2),
            K.RandomGrayscale(p=0.2),
        ),
        "blur p=1.0": (
            lambda x: color.random_gaussian_blur(x, 1.0, SIGMA),
            K.RandomGaussianBlur((k, k), SIGMA, border_type="reflect", p=1.0),
        ),
        "blur p=0.5": (
            lambda x: color.random_gaussian_blur(x, 0.5, SIGMA),
            K.RandomGaussianBlur((k, k), SIGMA, border_type="reflect", p=0.5),
        ),
        "solarize p=0.2": (ours_solarize, K.RandomSolarize(0.0, 0.0, p=0.2)),
    }


def view_pairs(size: int) -> dict[str, tuple[Aug, Aug]]:
    """name -> (ours, kornia's) for the whole views, on uint8 (B, 3, size, size)."""
    return {
        "VIEW byol1": (
            augment.build("byol1", size),
            kornia_view(size, (0.08, 1.0), JITTER, 1.0, 0.0),
        ),
        "VIEW byol2": (
            augment.build("byol2", size),
            kornia_view(size, (0.08, 1.0), JITTER, 0.1, 0.2),
        ),
        "VIEW moco": (
            augment.build("moco", size),
            kornia_view(size, (0.2, 1.0), MOCO_JITTER, 0.5, 0.0),
        ),
    }


def _time(fn: Aug, x: torch.Tensor, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        fn(x)
    _sync(device)
    return time.perf_counter() - start


def compare(
    pairs: dict[str, tuple[Aug, Aug]],
    x: torch.Tensor,
    repeats: int,
    device: torch.device,
) -> None:
    """Print ours vs kornia, images/s (median of ``repeats`` interleaved batches) and their ratio."""
    b = x.shape[0]
    for name, (ours, theirs) in pairs.items():
        fns = (ours, theirs)
        for fn in fns:  # warm-up
            _time(fn, x, device)
        times: tuple[list[float], list[float]] = ([], [])
        for r in range(repeats):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for i in order:
                times[i].append(_time(fns[i], x, device))
        ours_ips, kornia_ips = (b / statistics.median(t) for t in times)
        print(
            f"{name:<24} {ours_ips:>12,.0f} {kornia_ips:>12,.0f} {ours_ips / kornia_ips:>8.2f}",
            flush=True,
        )


def recipe_table(size: int, batch: int, repeats: int, device: torch.device) -> None:
    """Images/s (median of ``repeats`` batches) of every recipe, ours only."""
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    print(f"{'recipe':<16} {'median img/s':>13}")
    for recipe in augment.names():
        aug = augment.build(recipe, size)
        aug(x)
        t = statistics.median(_time(aug, x, device) for _ in range(repeats))
        print(f"{recipe:<16} {batch / t:>13,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument(
        "--recipes", action="store_true", help="time every recipe of ours instead"
    )
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument(
        "--only", default="", help="time only the ops/views whose name contains this"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"cpu, {args.threads} threads"
        )
        for size in args.sizes:
            print(
                f"\n# {name}; {size}x{size}, batch {args.batch}, median of {args.repeats} batches"
            )
            if args.recipes:
                recipe_table(size, args.batch, args.repeats, device)
                continue
            torch.manual_seed(0)
            u8 = torch.randint(
                0, 256, (args.batch, 3, size, size), dtype=torch.uint8, device=device
            )
            print(
                f"{'op / view':<24} {'ours img/s':>12} {'kornia img/s':>12} {'ratio':>8}"
            )
            ops = {k: v for k, v in op_pairs(size).items() if args.only in k}
            views = {k: v for k, v in view_pairs(size).items() if args.only in k}
            compare(ops, u8.float() / 255, args.repeats, device)
            compare(views, u8, args.repeats, device)


if __name__ == "__main__":
    main()
