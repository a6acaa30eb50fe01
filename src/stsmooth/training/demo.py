"""``stsmooth demo``: four teacher rules on real images, in about three minutes on a CPU.

The data set is chosen by what is installed (:func:`choose_data`):

- **Fashion-MNIST** when its four files are found (Debian's ``dataset-fashion-mnist``
  in ``/usr/share/datasets/fashion-mnist``, or ``$STSMOOTH_DATA/fashion_mnist``):
  MoCo v2, the packaged ``moco_fashion`` recipe with the overrides of
  :data:`FASHION_OVERRIDES` (150 steps x 128 images, ``fmnist_cnn`` width 8).
  MoCo, not BYOL: at this budget BYOL stays below the random network (and at
  800 steps of width 16 too), while MoCo moves off it at some seeds; over three
  seeds neither separates from it (README, "The demo").
- **digits** (scikit-learn's 8x8, always there) otherwise: the packaged
  ``byol_digits`` recipe. There a random network already scores ~84% kNN and
  no rule separates from it; the table's footer says so.

Each data set is trained four times, changing only the teacher (paper 000 Eq. 3):

=========  =====================  ==============================================
rule       m, p                   claim tested
=========  =====================  ==============================================
none       m = 0, p = 0           teacher = student (000 Table 1)
TMA        m = recipe, p = 0      the usual EMA teacher
SE         m = 0, p = recipe m_0  spatial ensemble alone (000 Table 1)
STS        m = recipe, p = recipe both (000 Table 2; p = 0.7 BYOL, 0.5 MoCo)
=========  =====================  ==============================================

and prints one table: teacher and student kNN top-1 on the test split, the
randomly initialised network's kNN top-1 for reference, and the teacher's
smoothness, i.e. the mean squared difference of its parameters and of its
outputs on a fixed probe batch between consecutive evaluations (000 Fig. 3),
averaged over the run. With several seeds each cell is mean ± std. A plot of
the accuracies and of the smoothness curves is written next to the runs.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from pathlib import Path

from stsmooth.data import registry
from stsmooth.training import config, train

#: Packaged recipes (stsmooth/recipes/), so the demo runs from any directory.
DIGITS_RECIPE = "byol_digits"
FASHION_RECIPE = "moco_fashion"
#: moco_fashion is tuned for 800 steps x 256 images; the demo runs the study's MoCo budget (benchmarks/study.py
#: SSL_FASHION, 150 steps x 128) with the narrow network (width 8: ~64% kNN at random init, so learning is
#: visible; width 16 scores ~74% at random init and 150 steps do not beat it), a key encoder that moves within
#: 150 steps (m = 0.95, horizon 20 steps) and no colour jitter (crops and flips only).
FASHION_OVERRIDES = ["model.options.width=8", "teacher.momentum=0.95", "augment.color=false",
                     "augment.crop_scale=[0.5,1.0]", "optim.batch_size=128", "optim.steps_per_epoch=30",
                     "optim.epochs=5", "eval.bank_size=5000"]
DATA_CHOICES = ("auto", "fashion_mnist", "digits")


def fashion_mnist_root() -> Path | None:
    """The folder holding all four Fashion-MNIST files where a run with ``data.root`` unset reads them, or None."""
    root = registry.default_root("fashion_mnist")
    _, files = registry.SYSTEM_ROOTS["fashion_mnist"]
    return root if all((root / f).is_file() or (root / f.removesuffix(".gz")).is_file() for f in files) else None


def choose_data(data: str = "auto") -> tuple[str, list[str], str]:
    """The demo's recipe, its overrides, and the reason, for ``data`` = auto | fashion_mnist | digits.

    ``auto`` takes Fashion-MNIST when its files are installed and digits otherwise.
    """
    if data not in DATA_CHOICES:
        raise ValueError(f"demo data {data!r} is not allowed; allowed: {', '.join(DATA_CHOICES)}")
    root = fashion_mnist_root()
    if data == "fashion_mnist" or (data == "auto" and root is not None):
        if root is None:
            raise FileNotFoundError(f"Fashion-MNIST not found in {registry.default_root('fashion_mnist')}; "
                                    "apt-get install dataset-fashion-mnist, or run --data digits")
        why = "requested" if data == "fashion_mnist" else f"its files are installed in {root}"
        return FASHION_RECIPE, list(FASHION_OVERRIDES), f"Fashion-MNIST ({why})"
    why = ("requested" if data == "digits" else
           f"Fashion-MNIST is not installed in {registry.default_root('fashion_mnist')}; "
           "apt-get install dataset-fashion-mnist for the Fashion-MNIST demo")
    return DIGITS_RECIPE, [], f"digits ({why}); on digits a random network already scores ~84% kNN"


def rules(cfg: config.RunConfig) -> list[tuple[str, float, float, str]]:
    """(name, m, p, momentum schedule) of the four teachers, from the recipe's STS values.

    SE gets p = the recipe's base m, so that a layer waits as long on average
    to be replaced (1 / (1 - p) steps) as TMA's average lag (1 / (1 - m)).
    """
    m, p, schedule = cfg.teacher.momentum, cfg.teacher.preserve_prob, cfg.teacher.momentum_schedule
    return [("none", 0.0, 0.0, "constant"), ("TMA", m, 0.0, schedule), ("SE", 0.0, m, "constant"),
            ("STS", m, p, schedule)]


def _over_seeds(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of one result over the seeds (NaN and None skipped)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values: list[float], fmt: str) -> str:
    mean, std = _over_seeds(values)
    if math.isnan(mean):
        return "-"
    return f"{mean:{fmt}}" if len(values) == 1 else f"{mean:{fmt}} ± {std:{fmt}}"


def _history(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("param_msd")]


def _smoothness(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key)]
    return statistics.fmean(values) if values else float("nan")


def main(seeds: list[int] | tuple[int, ...] = (0,), out: str = "runs/demo", epochs: int | None = None,
         overrides: list[str] | tuple[str, ...] = (), data: str = "auto") -> list[dict]:
    """Runs the demo and prints its table.

    Args:
        seeds: one run per rule and seed; cells are mean ± std over seeds.
        out: folder of the runs, the table (``table.md``) and the plot (``demo.png``).
        epochs: override the recipe's epochs (shorter or longer demo).
        overrides: further ``key=value`` overrides for every run (after the demo's own).
        data: "auto" (Fashion-MNIST when installed, else digits), "fashion_mnist" or "digits".

    Returns:
        One dict per (rule, seed): rule, m, p, seed, recipe, results and per-evaluation history.
    """
    recipe, data_overrides, reason = choose_data(data)
    print(f"demo data: {reason}", flush=True)
    extra = ["progress=false", "export=false", "eval.at_start=true", "eval.every_epochs=1", *data_overrides,
             *overrides, *([f"optim.epochs={epochs}"] if epochs is not None else [])]
    base = config.load(recipe, extra)
    start = time.perf_counter()
    records = []
    for name, m, p, schedule in rules(base):
        for seed in seeds:
            run_dir = Path(out) / f"{name.lower()}_seed{seed}"
            cfg = config.load(recipe, [*extra, f"teacher.momentum={m}", f"teacher.preserve_prob={p}",
                                       f"teacher.momentum_schedule={schedule}", f"seed={seed}",
                                       f"teacher.seed={seed}", f"out={run_dir}"])
            t0 = time.perf_counter()
            res = train.run(cfg)
            print(f"  {name:<4} seed {seed}: teacher kNN {res['teacher']['knn_top1']:.1f}%  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            records.append({"rule": name, "m": m, "p": p, "schedule": schedule, "seed": seed, "recipe": recipe,
                            "data": base.data.name, "results": res,
                            "history": _history(run_dir)})
    seconds = time.perf_counter() - start
    table = format_table(records, base)
    footer = (f"{len(records)} runs in {seconds:.0f} s; {base.method}, recipe {recipe}"
              + (f" with {' '.join(data_overrides)}" if data_overrides else "")
              + f", seeds {list(seeds)}\ndata: {reason}")
    print(table)
    print(footer)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "table.md").write_text(table + "\n\n" + footer + "\n")
    plot(records, Path(out) / "demo.png")
    print(f"plot: {Path(out) / 'demo.png'}")
    return records


def format_table(records: list[dict], base: config.RunConfig) -> str:
    """The demo's markdown table (see the module docstring)."""
    lines = [("| teacher rule | m | p | teacher kNN top-1 (%) | student kNN top-1 (%) | teacher param MSD "
              "| teacher output MSD |"), "|---|---|---|---|---|---|---|"]
    order = list(dict.fromkeys(r["rule"] for r in records))
    for name in order:
        rs = [r for r in records if r["rule"] == name]
        lines.append("| " + " | ".join([
            name, f"{rs[0]['m']:g}" + (" -> 1 (cosine)" if rs[0]["schedule"] == "cosine" else ""),
            f"{rs[0]['p']:g}",
            _cell([r["results"]["teacher"]["knn_top1"] for r in rs], ".1f"),
            _cell([r["results"]["student"]["knn_top1"] for r in rs], ".1f"),
            _cell([_smoothness(r["history"], "param_msd") for r in rs], ".2e"),
            _cell([_smoothness(r["history"], "output_msd") for r in rs], ".2e"),
        ]) + " |")
    init = [r["results"]["init"]["knn_top1"] for r in records if r["rule"] == order[0]]
    lines.append(f"| random init | - | - | {_cell(init, '.1f')} | {_cell(init, '.1f')} | - | - |")
    lines.append("")
    lines.append(f"MSD: mean squared difference between consecutive epochs (000 Fig. 3), averaged over "
                 f"{base.optim.epochs} epochs; kNN: k={base.eval.knn_k}, T={base.eval.knn_t}, {base.data.name} "
                 f"test split" + (f", bank of {base.eval.bank_size} training images." if base.eval.bank_size else "."))
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Accuracy per rule and the smoothness curves per epoch (log scale), like 000 Fig. 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(r["rule"] for r in records))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name in order:
        rs = [r for r in records if r["rule"] == name]
        for ax, key in zip(axes[1:], ("param_msd", "output_msd")):
            epochs = [int(row["epoch"]) for row in rs[0]["history"]]
            curves = [[float(row[key]) for row in r["history"]] for r in rs]
            mean = [statistics.fmean(v) for v in zip(*curves)]
            ax.plot(epochs, mean, marker=".", label=name)
    x = range(len(order))
    lowest = 100.0
    for offset, who in ((-0.2, "teacher"), (0.2, "student")):
        stats = [_over_seeds([r["results"][who]["knn_top1"] for r in records if r["rule"] == n]) for n in order]
        axes[0].bar([i + offset for i in x], [m for m, _ in stats], yerr=[s for _, s in stats], width=0.4,
                    label=who, capsize=3)
        lowest = min([lowest] + [m - s for m, s in stats])
    init = _over_seeds([r["results"]["init"]["knn_top1"] for r in records if r["rule"] == order[0]])[0]
    axes[0].axhline(init, color="gray", linestyle="--", label="random init")
    axes[0].set_ylim(max(0.0, min(lowest, init) - 10), 100)
    axes[0].set_xticks(list(x), order)
    axes[0].set_ylabel("kNN top-1 (%)")
    axes[0].legend(fontsize=8)
    for ax, title in zip(axes[1:], ("teacher parameter MSD", "teacher output MSD")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title + " between epochs")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
