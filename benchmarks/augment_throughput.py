"""Images per second of every ``stsmooth.augment`` recipe, on CPU and on CUDA if present.

Usage:
    python benchmarks/augment_throughput.py [--size 32] [--batch 512] [--iters 10] [--threads N]

Input is a uint8 batch already on the device, as ``DeviceLoader`` yields it;
the time covers conversion, every random op and the output in [0, 1].
"""

from __future__ import annotations

import argparse
import time

import torch

from stsmooth import augment


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(recipe: str, size: int, batch: int, iters: int, device: torch.device) -> tuple[float, float, float]:
    """Images/s of one recipe over ``iters`` timed batches after 2 warm-up batches.

    Returns (best, median, per CPU-second). The best batch is the one least
    disturbed by other processes on a shared machine; images per second of
    this process's CPU time is the figure that contention disturbs least.
    """
    aug = augment.build(recipe, size)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    for _ in range(2):
        aug(x)
    _sync(device)
    times = []
    cpu_start = time.process_time()
    for _ in range(iters):
        start = time.perf_counter()
        aug(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu_start
    times.sort()
    return batch / times[0], batch / times[len(times) // 2], batch * iters / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        else:
            name = f"cpu, {torch.get_num_threads()} threads"
        print(f"# {name}; {args.size}x{args.size}, batch {args.batch}, {args.iters} timed batches")
        print(f"{'recipe':<16} {'best img/s':>12} {'median img/s':>13} {'img/cpu-s':>12}")
        for recipe in augment.names():
            best, median, per_cpu = throughput(recipe, args.size, args.batch, args.iters, device)
            print(f"{recipe:<16} {best:>12,.0f} {median:>13,.0f} {per_cpu:>12,.0f}")


if __name__ == "__main__":
    main()
