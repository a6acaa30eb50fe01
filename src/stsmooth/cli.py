"""The ``stsmooth`` command.

    stsmooth train RECIPE [key=value ...]            train (torchrun-aware)
    stsmooth recipes                                  the packaged recipes, one line each
    stsmooth eval PROTOCOL CHECKPOINT [key=value ...] knn | linear | finetune | retrieval | lowshot | corruption
    stsmooth export CHECKPOINT OUT.safetensors [--student]
    stsmooth demo [--seeds 0 1 2] [--data auto|fashion_mnist|digits] [--out runs/demo]
    stsmooth sweep RECIPE --grid KEY=V1,V2 [--grid ...] --seeds 0 1 2 [key=value ...] --out DIR

A recipe is a YAML path or the name of a recipe shipped in the package
(``stsmooth/recipes/``): ``stsmooth train byol_digits``. ``stsmooth --version``.

Many GPUs (DDP, NCCL; gloo on CPU), the global ``optim.batch_size`` split across ranks::

    torchrun --nproc_per_node 8 -m stsmooth train byol_sts_imagenet data.root=/data/imagenet

Many nodes, through torchrun's rendezvous (run the same line on every node)::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \
        --rdzv_id byol1 -m stsmooth train byol_sts_imagenet data.root=/data/imagenet
 Errors in the input are printed as one line
and give exit status 2; a run stopped by a non-finite loss gives 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import stsmooth


def resolve_recipe(recipe: str) -> Path:
    """A recipe path, or the packaged recipe of that name (:func:`stsmooth.training.config.recipe_path`)."""
    from stsmooth.training.config import recipe_path

    return recipe_path(recipe)


def _split_recipe(args: list[str]) -> tuple[str | None, list[str]]:
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(args: argparse.Namespace) -> int:
    from stsmooth.training import config, train

    recipe, overrides = _split_recipe(args.rest)
    cfg = config.load(resolve_recipe(recipe) if recipe else None, overrides)
    import torch.distributed as tdist

    from stsmooth.core.distributed import barrier, is_main

    # on failure the process group is left as it is: main() ends the process without tearing it down
    results = train.run(cfg)
    if is_main():
        print(json.dumps(results, indent=2))
    # rank 0 writes results, exports and plots after the loop: let every rank finish
    # before the process group goes, so no rank tears gloo down under a busy peer
    barrier()
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """``stsmooth recipes``: one line per packaged recipe, its documented variants under it."""
    from stsmooth.training import config

    print(f"{'recipe':24s} {'method':13s} {'data':9s} {'model':11s} {'teacher rule':46s} paper")
    for name in config.recipe_names():
        print(config.describe_recipe(name))
        for overrides, reason in config.recipe_notes(name)["variants"]:
            print(f"    + {' '.join(overrides)}: {reason}")
    print(f"train one: stsmooth train NAME [key=value ...]; the files are in {config.recipes_dir()}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``stsmooth eval PROTOCOL CHECKPOINT [key=value ...]`` (:mod:`stsmooth.training.checkpoint_eval`)."""
    from stsmooth.evaluate.runner import format_table
    from stsmooth.training.checkpoint_eval import evaluate_checkpoint, evaluate_corruption, write_metrics

    if args.protocol == "corruption":  # 15 corruptions x 5 severities; writes its own json/md/png
        report, paths = evaluate_corruption(args.checkpoint, args.overrides, args.out)
        print(report)
        print(f"written: {', '.join(str(p) for p in paths.values())}")
        return 0
    which, metrics = evaluate_checkpoint(args.protocol, args.checkpoint, args.overrides)
    print(f"{args.protocol} evaluation of the {which} in {args.checkpoint}")
    print(format_table(metrics))
    out = args.out or Path(args.checkpoint).parent / f"eval_{args.protocol}_{which}.json"
    print(f"metrics written to {write_metrics(metrics, out)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from stsmooth.training import checkpoint

    path = checkpoint.export(args.checkpoint, args.out, which="student" if args.student else "teacher")
    print(f"{'student' if args.student else 'teacher'} backbone written to {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from stsmooth.training import demo

    # Tiny networks gain little from more threads, and lose a lot when cores are shared.
    torch.set_num_threads(args.threads)
    demo.main(seeds=args.seeds, out=args.out, epochs=args.epochs, data=args.data)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from stsmooth.training import sweep

    return sweep.main(resolve_recipe(args.recipe), args.rest, resolve=resolve_recipe)


def parser() -> argparse.ArgumentParser:
    from stsmooth.training.checkpoint_eval import PROTOCOLS

    p = argparse.ArgumentParser(prog="stsmooth", description="Teacher smoothing (TMA, SE, STS, EMAN) for "
                                "student-teacher learning.")
    p.add_argument("--version", action="version", version=f"stsmooth {stsmooth.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train from a recipe (a packaged recipe's name or a YAML path): "
                       "stsmooth train byol_digits [key=value ...]")
    t.add_argument("rest", nargs="*", metavar="RECIPE [key=value ...]")
    t.set_defaults(func=cmd_train)
    r = sub.add_parser("recipes", help="list the packaged recipes: method, data, model, teacher rule, paper")
    r.set_defaults(func=cmd_recipes)
    e = sub.add_parser("eval", help="evaluate a checkpoint: stsmooth eval knn CHECKPOINT [key=value ...]")
    e.add_argument("protocol", metavar="PROTOCOL", help=" | ".join(PROTOCOLS))
    e.add_argument("checkpoint", metavar="CHECKPOINT")
    e.add_argument("overrides", nargs="*", metavar="key=value")
    e.add_argument("--out", default=None, help="metrics JSON (default: next to the checkpoint)")
    e.set_defaults(func=cmd_eval)
    x = sub.add_parser("export", help="write the teacher's backbone as safetensors (torchvision names)")
    x.add_argument("checkpoint", metavar="CHECKPOINT")
    x.add_argument("out", metavar="OUT.safetensors")
    x.add_argument("--student", action="store_true", help="export the student's backbone instead")
    x.set_defaults(func=cmd_export)
    d = sub.add_parser("demo", help="no smoothing, TMA, SE and STS teachers: MoCo v2 on Fashion-MNIST when installed, "
                       "else BYOL on digits (about 3 minutes on CPU)")
    d.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (mean ± std over them)")
    d.add_argument("--data", choices=["auto", "fashion_mnist", "digits"], default="auto",
                   help="auto: Fashion-MNIST when its files are installed, else digits")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    d.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    d.set_defaults(func=cmd_demo)
    w = sub.add_parser("sweep", help="a run per grid point and seed, then sweep.csv, summary.md and a plot "
                       "(stsmooth sweep RECIPE --help)")
    w.add_argument("recipe", metavar="RECIPE")
    w.add_argument("rest", nargs=argparse.REMAINDER, metavar="--grid KEY=V1,V2 --seeds S [key=value] --out DIR")
    w.set_defaults(func=cmd_sweep)
    return p


def _status(args: argparse.Namespace) -> int:
    from stsmooth.errors import StsmoothError
    from stsmooth.training.train import NonFiniteLossError

    try:
        return args.func(args)
    except NonFiniteLossError as err:
        print(f"stsmooth: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, StsmoothError) as err:
        print(f"stsmooth: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its status; a torchrun worker ends its process with it instead.

    Under torchrun, after the command (its results and checkpoints on disk, the process group
    destroyed when it succeeded) the worker ends with ``os._exit(status)``: the interpreter's
    teardown after gloo runs aborted now and then ("terminate called without an active
    exception", in 4 of ~23 test runs of 2-rank jobs here), turning a finished run into a
    SIGABRT for torchrun; and a rank that failed leaves peers in a collective, where destroying
    the group or the teardown can block (a hung peer) instead of giving this status
    (:func:`stsmooth.core.distributed.end_worker`).
    """
    args = parser().parse_args(argv)
    from stsmooth.core.distributed import end_worker, launched_by_torchrun

    torchrun = launched_by_torchrun()
    try:
        status = _status(args)
    except SystemExit as stop:  # preemption (status 75, checkpoint written) ends the same way
        if not torchrun:
            raise
        status = stop.code if isinstance(stop.code, int) else 1
    except Exception:
        if not torchrun:
            raise
        traceback.print_exc()
        status = 1
    if torchrun:
        end_worker(status)
    return status
