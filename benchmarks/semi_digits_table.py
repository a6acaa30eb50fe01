"""The digits semi-supervised table: supervised-only, Π-model, Mean Teacher and FixMatch,
each with a TMA and an STS teacher, over three seeds (= three label splits).

Every run is exactly ``stsmooth train <recipe>_digits teacher.preserve_prob=P
seed=S data.split_seed=S out=...`` (the commands are printed); runs go to a
process pool, one torch thread each, and the script prints a markdown table of
the student's and the teacher's top-1 on the digits test split (297 images),
mean ± standard deviation over the seeds, with the runs' wall time.

    python benchmarks/semi_digits_table.py                       # 24 runs, 2 at a time
    python benchmarks/semi_digits_table.py --seeds 0 --methods fixmatch supervised
    python benchmarks/semi_digits_table.py --set data.labels_per_class=5 --out runs/digits5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

#: table row name -> recipe
METHODS = {
    "supervised": ("Supervised-only", "supervised_digits"),
    "pi_model": ("Π-model", "pi_model_digits"),
    "mean_teacher": ("Mean Teacher", "mean_teacher_digits"),
    "fixmatch": ("FixMatch", "fixmatch_digits"),
}

#: teacher column -> overrides (000 §4: p = 0.5 for FixMatch; TMA is p = 0)
TEACHERS = {
    "TMA": ["teacher.preserve_prob=0.0"],
    "STS": ["teacher.preserve_prob=0.5"],
}


def run_one(job: tuple[str, list[str], int]) -> dict:
    """Trains one run in this worker process; returns its results.json content and wall time."""
    recipe, overrides, threads = job
    import torch

    torch.set_num_threads(threads)
    from stsmooth.training import config, train

    start = time.perf_counter()
    results = train.run(config.load(recipe, overrides))  # a packaged recipe, by name
    results["wall_seconds"] = time.perf_counter() - start
    return results


def over_seeds(values: list[float]) -> str:
    """``mean ± std`` of one result over the seeds (the value alone for one seed)."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    p.add_argument("--out", default="runs/semi_digits", help="folder of the run folders")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)

    jobs, keys, commands = [], [], []
    for method in args.methods:
        recipe = METHODS[method][1]
        for teacher in args.teachers:
            for seed in args.seeds:
                out = f"{args.out}/{method}_{teacher.lower()}_s{seed}"
                overrides = [*TEACHERS[teacher], f"seed={seed}", f"data.split_seed={seed}", *args.set,
                             f"out={out}", "progress=false"]
                jobs.append((recipe, overrides, args.threads))
                keys.append((method, teacher, seed))
                commands.append("stsmooth train " + " ".join([recipe, *overrides]))
    print(f"{len(jobs)} runs, {args.jobs} at a time, {args.threads} thread(s) each", file=sys.stderr)
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run_one, jobs, chunksize=1)
    total = time.perf_counter() - start

    by_cell: dict[tuple[str, str], list[dict]] = {}
    for (method, teacher, _), res in zip(keys, results):
        by_cell.setdefault((method, teacher), []).append(res)
    labels = results[0].get("labels")
    lines = [f"Digits test split (297 images), {labels} labels ({labels // 10} per class), "
             f"top-1 % mean ± std over seeds {' '.join(map(str, args.seeds))} (seed s uses label split s).", "",
             "| method | teacher | student top-1 | teacher top-1 | s / run |", "|---|---|---|---|---|"]
    for method in args.methods:
        for teacher in args.teachers:
            cell = by_cell[(method, teacher)]
            student = [r["student"]["top1"] for r in cell if r["student"]["top1"] is not None]
            teach = [r["teacher"]["top1"] for r in cell if r["teacher"]["top1"] is not None]
            secs = statistics.mean(r["wall_seconds"] for r in cell)
            lines.append(f"| {METHODS[method][0]} | {teacher} | {over_seeds(student)} | {over_seeds(teach)} | {secs:.0f} |")
    lines += ["", f"{len(jobs)} runs in {total / 60:.1f} min ({args.jobs} at a time, {args.threads} torch thread(s) "
              f"each, {os.cpu_count()} CPUs visible).", "", "Commands:", "", "```"]
    lines += commands + ["```"]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    per_run = {f"{m}_{t.lower()}_s{s}": {"student": r["student"]["top1"], "teacher": r["teacher"]["top1"]}
               for (m, t, s), r in zip(keys, results)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table.json").write_text(json.dumps(per_run, indent=1))
    return table


if __name__ == "__main__":
    main()
