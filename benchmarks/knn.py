"""Benchmark of the weighted cosine kNN (stsmooth.evaluate.knn) against its lower bound and scikit-learn.

Setting of issue 3: 50,000 x 512 training and 10,000 query L2-normalised
random features, 100 classes, k = 20, T = 0.07. Prints

* our ``knn`` (chunked products + per-chunk topk + vote),
* the single ``queries @ train.T`` product that any exact search needs (the
  lower bound) and the ratio of the two (target <= 1.3 on CPU),
* scikit-learn's brute-force cosine ``KNeighborsClassifier`` with the same
  neighbours and weights, fit + predict, and how often its top-1 prediction
  agrees with ours,
* the same kNN on the GPU when CUDA is available.

Timings are the minimum over ``--repeats`` interleaved runs (the machine may
be shared). Run: ``python benchmarks/knn.py`` (``--sweep`` also times several
chunk sizes, ``--no-sklearn`` skips the slow reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from stsmooth.evaluate.knn import auto_chunk_size, knn, knn_scores


def timed(fn, sync=None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call.

    CPU time is reported too because the machine may be shared: other
    processes inflate wall time but hardly the CPU time this process uses.
    """
    if sync:
        sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if sync:
        sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def make(n_train, n_query, dim, classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = F.normalize(torch.randn(n_train, dim, generator=g), dim=1).to(device)
    query = F.normalize(torch.randn(n_query, dim, generator=g), dim=1).to(device)
    y_train = torch.randint(0, classes, (n_train,), generator=g).to(device)
    y_query = torch.randint(0, classes, (n_query,), generator=g).to(device)
    return train, y_train, query, y_query


def bench_device(args, device) -> None:
    train, y_train, query, y_query = make(args.train, args.query, args.dim, args.classes, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    run_knn = lambda cs=None: knn(train, y_train, query, y_query, k=args.k, temperature=args.temperature, chunk_size=cs)  # noqa: E731
    run_mm = lambda: query @ train.T  # noqa: E731
    run_knn(), run_mm()  # warm-up (allocator, BLAS threads, CUDA kernels)
    pairs = []  # back to back, so both calls of a pair see about the same load
    for _ in range(args.repeats):
        pairs.append((timed(run_mm, sync), timed(run_knn, sync)))
    mm_wall, mm_cpu = min(p[0][0] for p in pairs), min(p[0][1] for p in pairs)
    knn_wall, knn_cpu = min(p[1][0] for p in pairs), min(p[1][1] for p in pairs)
    pair_ratios = sorted(p[1][0] / p[0][0] for p in pairs)
    auto = auto_chunk_size(args.train, device)
    print(f"[{device.type}] threads={torch.get_num_threads()} auto chunk_size={auto}, min over {args.repeats} interleaved runs")
    print(f"[{device.type}] stsmooth knn        : wall {knn_wall:7.3f} s  cpu {knn_cpu:7.3f} s  -> {run_knn()}")
    print(f"[{device.type}] queries @ train.T   : wall {mm_wall:7.3f} s  cpu {mm_cpu:7.3f} s  (lower bound)")
    print(
        f"[{device.type}] ratio knn / matmul  : wall {knn_wall / mm_wall:7.3f}    cpu {knn_cpu / mm_cpu:7.3f}    "
        f"median of pairs {pair_ratios[len(pair_ratios) // 2]:.3f}   (target <= 1.3 on CPU)"
    )
    if args.sweep:
        for cs in (128, 256, 512, 1024, 2048, 4096):
            runs = [timed(lambda: run_knn(cs), sync) for _ in range(args.repeats)]
            wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            print(f"[{device.type}]   chunk_size={cs:5d}: wall {wall:7.3f} s ratio {wall / mm_wall:6.3f}   cpu {cpu:7.3f} s ratio {cpu / mm_cpu:6.3f}")
    return knn_wall


def bench_sklearn(args, t_ours: float) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    train, y_train, query, y_query = make(args.train, args.query, args.dim, args.classes, torch.device("cpu"))
    temperature = args.temperature
    # cosine distance d = 1 - cos, so exp(cos / T) = exp((1 - d) / T): the same vote weights as ours.
    clf = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", metric="cosine", weights=lambda d: np.exp((1.0 - d) / temperature))
    x_train, x_query = train.numpy(), query.numpy()
    start = time.perf_counter()
    clf.fit(x_train, y_train.numpy())
    pred = clf.predict(x_query)
    t_sk = time.perf_counter() - start
    ours = knn_scores(train, y_train, query, k=args.k, temperature=temperature).argmax(dim=1).numpy()
    print(f"[cpu] sklearn KNeighborsClassifier (brute, cosine) fit+predict: {t_sk:8.3f} s   top-1 {100 * (pred == y_query.numpy()).mean():.2f}%")
    print(f"[cpu] speed-up of ours over sklearn : {t_sk / t_ours:8.2f}x   (must be > 1)")
    print(f"[cpu] top-1 predictions agreeing with sklearn: {100 * (pred == ours).mean():.3f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=50_000)
    p.add_argument("--query", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweep", action="store_true", help="also time several chunk sizes")
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--no-cpu", action="store_true", help="GPU only")
    args = p.parse_args()
    print(f"train {args.train} x {args.dim}, queries {args.query}, {args.classes} classes, k={args.k}, T={args.temperature}")
    if not args.no_cpu:
        t_cpu = bench_device(args, torch.device("cpu"))
        if not args.no_sklearn:
            bench_sklearn(args, t_cpu)
    if torch.cuda.is_available():
        bench_device(args, torch.device("cuda"))
    else:
        print("[cuda] not available")


if __name__ == "__main__":
    main()
