"""``stsmooth sweep``: one training run per grid point and seed, and the tables and plots over them.

    stsmooth sweep RECIPE --grid teacher.preserve_prob=0,0.5,0.7,0.9 --grid teacher.momentum=0,0.9,0.99 \\
        --seeds 0 1 2 [key=value ...] --out DIR

Every combination of the ``--grid`` values (and of the ``--variant`` s, named
sets of overrides for points that are no Cartesian product, e.g. "none", "SE",
"TMA", "STS" of 000 Table 1) is trained once per seed, each as a normal run
folder ``DIR/runs/<key>=<value>,...,seed=<s>`` made by
:func:`stsmooth.training.train.run`. Run ``k`` is the same as::

    stsmooth train RECIPE [key=value ...] <grid key=value ...> seed=<s> out=DIR/runs/... resume=true

(``--dry-run`` prints these lines). A run folder with ``results.json`` is
finished and skipped; one with a checkpoint is resumed (``resume=true``), so
running the same command again completes an interrupted sweep. The folder
keeps the sweep's spec (``sweep.json``: recipe and its sha256, grid, variants,
overrides, seed keys), and a command whose spec differs is refused in one line
naming the difference, so results of different grids never mix; more seeds
may be added later.

At the end the folder holds

* ``sweep.csv``: one row per finished run: the grid values, the seed, every
  number of its ``results.json`` (flattened: ``teacher.knn_top1``, ...) and
  ``seconds`` (the run's wall time);
* ``summary.md``: mean ± sample std over the seeds of each grid point;
* ``heatmap.png`` for two grid axes (as 000 Fig. 4: p against m), or
  ``line.png``, mean with a ±1 std band and the single seeds, for one.

Runs go one after another in this process by default; ``--launcher submitit``
submits each run as a job through submitit (Slurm on a cluster, or
``--cluster local`` for local processes) and waits for them;
``--submitit key=value`` passes executor parameters (``timeout_min=120``,
``slurm_partition=gpu``, ``gpus_per_node=1``, ...).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import shlex
import statistics
import sys
import typing
from pathlib import Path

SPEC_FILE = "sweep.json"
#: keys every run of a sweep sets itself
RESERVED = ("out", "resume")
#: metrics plotted by default, the first one present (self-supervised, then semi-supervised)
DEFAULT_METRICS = ("teacher.knn_top1", "teacher.top1")
#: overrides that change no result, so a sweep may be continued with or without them
NEUTRAL = ("progress",)
#: results.json numbers that describe the run rather than measure it (kept in sweep.csv, not summarised)
NOT_METRICS = ("epochs", "steps", "labels")


# ---------------------------------------------------------------- the spec


@dataclasses.dataclass
class Spec:
    """What a sweep folder holds: the same spec means the same runs.

    Attributes:
        recipe: recipe path, absolute.
        recipe_sha256: digest of the recipe's text when the sweep began.
        grid: ``{dotted key: [value text, ...]}`` in command-line order.
        variants: ``{name: [key=value, ...]}``; a variant may set ``recipe=...``.
        overrides: ``key=value`` applied to every run, before the grid's.
        seed_keys: config keys set to the seed (``seed``; also ``data.split_seed``
            for the label splits of 000 Table 6).
        seeds: seeds run so far (the union over commands).
    """

    recipe: str
    recipe_sha256: str
    grid: dict[str, list[str]]
    variants: dict[str, list[str]]
    overrides: list[str]
    seed_keys: list[str]
    seeds: list[int]

    def axes(self) -> list[tuple[str, list[str]]]:
        """``[(axis, values)]``: "variant" first when there are variants, then the grid keys."""
        axes = [("variant", list(self.variants))] if self.variants else []
        return axes + [(k, list(v)) for k, v in self.grid.items()]

    def points(self) -> list[dict[str, str]]:
        """Every grid point as ``{axis: value}``, the last axis varying fastest."""
        axes = self.axes()
        return [dict(zip([a for a, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


@dataclasses.dataclass
class Run:
    """One training run of a sweep."""

    point: dict[str, str]
    seed: int
    folder: Path
    recipe: str
    overrides: list[str]

    @property
    def name(self) -> str:
        return self.folder.name

    def status(self) -> str:
        """"done" (results.json), "resume" (a checkpoint) or "new"."""
        if (self.folder / "results.json").is_file():
            return "done"
        return "resume" if (self.folder / "checkpoints" / "last.pt").is_file() else "new"

    def command(self) -> str:
        return shlex.join(["stsmooth", "train", self.recipe, *self.overrides])


def split_values(text: str) -> list[str]:
    """``"0,0.5,[0.2,1.0]"`` -> ``["0", "0.5", "[0.2,1.0]"]``: commas inside brackets do not split."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    out.append(current.strip())
    return out


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["teacher.momentum=0,0.9", ...]`` -> ``{"teacher.momentum": ["0", "0.9"]}``.

    Raises:
        ValueError: no ``=``, no values, an empty value, a repeated key or value.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--grid {item!r} is not of the form KEY=V1,V2,... (e.g. teacher.momentum=0,0.9,0.99)")
        vals = split_values(values) if values.strip() else []
        if not vals or any(v == "" for v in vals):
            raise ValueError(f"--grid {item!r}: empty value list for {key}; give one or more values, comma-separated")
        if key in grid:
            raise ValueError(f"--grid key {key!r} is given twice; list all its values in one --grid {key}=V1,V2")
        if len(set(vals)) != len(vals):
            raise ValueError(f"--grid {key}: value {next(v for v in vals if vals.count(v) > 1)!r} is listed twice")
        grid[key] = vals
    return grid


def parse_variants(items: list[list[str]]) -> dict[str, list[str]]:
    """``[["SE", "teacher.momentum=0"], ...]`` -> ``{"SE": ["teacher.momentum=0"]}``."""
    variants: dict[str, list[str]] = {}
    for name, *overrides in items:
        if "=" in name or not name.strip():
            raise ValueError(f"--variant needs a NAME first, then key=value overrides; got {name!r}")
        if name in variants:
            raise ValueError(f"--variant {name!r} is given twice")
        bad = [o for o in overrides if "=" not in o or o.startswith("=")]
        if bad:
            raise ValueError(f"--variant {name}: {bad[0]!r} is not of the form key=value")
        variants[name] = list(overrides)
    return variants


def _key_type(key: str):
    """The annotated type of a dotted config key, None below a dict field (``model.options.width``)."""
    from stsmooth.training import config

    node = config.RunConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    return node


def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args) + (" or null" if type(None) in typing.get_args(tp) else "")
    if origin in (list, typing.List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, typing.Dict):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _dict_fields() -> list[str]:
    """Dotted keys whose value is a free mapping (their sub-keys are not in the schema)."""
    return [k for k in _valid_keys() if typing.get_origin(_key_type(k)) in (dict, typing.Dict)]


def _valid_keys() -> list[str]:
    from stsmooth.training import config

    return config.valid_keys()


def check_key(key: str, where: str) -> None:
    """One-line ValueError naming the nearest key when ``key`` is not a config key."""
    from stsmooth.training import config

    if key in ("recipe",) and where.startswith("--variant"):
        return
    if key in _valid_keys() or any(key.startswith(d + ".") for d in _dict_fields()):
        return
    near = config.nearest_key(key)
    hint = f"; did you mean '{near}'?" if near else ""
    raise ValueError(f"{where} key '{key}' is not a config key{hint}")


def _check_value(recipe: Path, base: list[str], key: str, value: str, where: str) -> None:
    """Loads the recipe with ``key=value``; a type error names the key and its type."""
    from stsmooth.training import config

    try:
        config.load(recipe, [*base, f"{key}={value}"])
    except ValueError as err:
        if str(err).startswith(f"bad value for config key '{key}'"):
            raise ValueError(f"{where} {key}={value}: wrong type, {key} takes {_type_name(_key_type(key))}") from None
        raise ValueError(f"{where} {key}={value}: {err}") from None


def _recipes_sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def make_spec(recipe: Path, grid: dict[str, list[str]], variants: dict[str, list[str]], seeds: list[int] | None,
              overrides: list[str], seed_keys: list[str], resolve=Path) -> Spec:
    """Checks the command's parts against the config schema and returns its spec.

    ``resolve`` turns a variant's ``recipe=NAME`` into a path (the CLI passes its
    lookup of the packaged ``stsmooth/recipes/NAME.yaml``); the spec stores absolute paths.

    Raises:
        ValueError: no grid, no seeds, an unknown key (naming the nearest), a value of
            the wrong type (naming the key and the type), or a key set twice.
    """
    if not grid and not variants:
        raise ValueError("sweep needs a grid: --grid KEY=V1,V2,... (e.g. --grid teacher.preserve_prob=0,0.5,0.7) "
                         "or --variant NAME key=value ...")
    if not seeds:
        raise ValueError("sweep needs seeds: --seeds 0 [1 2 ...]")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: seeds must be distinct integers >= 0")
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"argument {item!r} is not of the form key=value (e.g. optim.epochs=20)")
    for key in seed_keys:
        check_key(key, "--seed-keys")
    fixed = {o.partition("=")[0] for o in overrides}
    for key in grid:
        check_key(key, "--grid")
    recipes = [recipe]
    for name, items in variants.items():
        for i, item in enumerate(items):
            key, _, value = item.partition("=")
            check_key(key, f"--variant {name}")
            if key == "recipe":
                recipes.append(Path(resolve(value)))
                items[i] = f"recipe={recipes[-1].resolve()}"
    swept = set(grid) | {o.partition("=")[0] for items in variants.values() for o in items}
    for key in sorted(fixed):
        if key in RESERVED or key in seed_keys:
            raise ValueError(f"{key}= is set by the sweep for each run (out, resume and the --seed-keys {seed_keys})")
        if key in swept:
            raise ValueError(f"{key} is both a sweep axis and a fixed override {key}=...; keep one")
    for key in swept:
        if key in RESERVED or key in seed_keys:
            raise ValueError(f"{key} cannot be swept: the sweep sets it for each run (use --seeds for seeds)")
    clash = set(grid) & {o.partition("=")[0] for items in variants.values() for o in items}
    if clash:
        raise ValueError(f"{sorted(clash)[0]} is both a --grid key and set by a --variant; keep one")
    for key, values in grid.items():  # each value alone: a type error names its key
        for value in values:
            _check_value(recipe, list(overrides), key, value, "--grid")
    return Spec(str(recipe.resolve()), _recipes_sha256(recipes), grid, variants, list(overrides), list(seed_keys),
                sorted(seeds))


def plan(spec: Spec, out: Path, seeds: list[int] | None = None) -> list[Run]:
    """The runs of ``spec`` for ``seeds`` (default: all of the spec's), in order."""
    runs = []
    for point in spec.points():
        recipe = spec.recipe
        overrides = list(spec.overrides)
        for axis, value in point.items():
            if axis == "variant":
                for item in spec.variants[value]:
                    key, _, val = item.partition("=")
                    if key == "recipe":
                        recipe = val
                    else:
                        overrides.append(item)
            else:
                overrides.append(f"{axis}={value}")
        for seed in seeds if seeds is not None else spec.seeds:
            name = ",".join(f"{a}={v}" for a, v in point.items()).replace("/", "_") + f",seed={seed}"
            folder = out / "runs" / name
            runs.append(Run(dict(point), seed, folder, recipe,
                            overrides + [f"{k}={seed}" for k in spec.seed_keys] + [f"out={folder}", "resume=true"]))
    return runs


def difference(stored: Spec, new: Spec) -> str | None:
    """The first difference between two specs that would mix results, as a phrase; None if compatible."""
    if stored.recipe != new.recipe:
        return f"recipe {stored.recipe} there, {new.recipe} here"
    if stored.recipe_sha256 != new.recipe_sha256:
        return f"recipe {Path(new.recipe).name} (or a variant's) has changed since (sha256 " \
               f"{stored.recipe_sha256[:12]} there, {new.recipe_sha256[:12]} here)"
    if list(stored.grid) != list(new.grid):
        return f"grid keys {', '.join(stored.grid) or 'none'} there, {', '.join(new.grid) or 'none'} here"
    for key in stored.grid:
        if stored.grid[key] != new.grid[key]:
            return f"{key} values {','.join(stored.grid[key])} there, {','.join(new.grid[key])} here"
    if stored.variants != new.variants:
        diff = [n for n in dict.fromkeys([*stored.variants, *new.variants])
                if stored.variants.get(n) != new.variants.get(n)] or list(new.variants)
        name = diff[0]
        return f"variant {name}: {' '.join(stored.variants.get(name, ['(none)']))} there, " \
               f"{' '.join(new.variants.get(name, ['(none)']))} here"
    there, here = _settings(stored.overrides), _settings(new.overrides)
    if there != here:
        key = next(k for k in dict.fromkeys([*there, *here]) if there.get(k) != here.get(k))
        shown = [f"{key}={d[key]}" if key in d else f"no {key}" for d in (there, here)]
        return f"override {shown[0]} there, {shown[1]} here"
    if stored.seed_keys != new.seed_keys:
        return f"--seed-keys {' '.join(stored.seed_keys)} there, {' '.join(new.seed_keys)} here"
    return None


def _settings(overrides: list[str]) -> dict[str, str]:
    """``key=value`` list as a dict (the last one wins, as in the config), without keys that change no result."""
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in NEUTRAL:
            out[key] = value
    return out


def load_spec(out: Path) -> Spec | None:
    path = out / SPEC_FILE
    if not path.is_file():
        return None
    return Spec(**json.loads(path.read_text()))


def save_spec(spec: Spec, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(spec), indent=2) + "\n")
    tmp.replace(out / SPEC_FILE)


def merge_with_folder(spec: Spec, out: Path) -> Spec:
    """The spec to store: ``spec`` with the folder's seeds added; refuses a different grid.

    Raises:
        ValueError: one line naming the first difference.
    """
    stored = load_spec(out)
    if stored is None:
        return spec
    diff = difference(stored, spec)
    if diff:
        raise ValueError(f"sweep folder {out} was made with a different sweep ({diff}); its results would mix: "
                         f"use another --out, or the same grid")
    return dataclasses.replace(spec, seeds=sorted(set(stored.seeds) | set(spec.seeds)))


# ---------------------------------------------------------------- running


def run_one(recipe: str, overrides: list[str]) -> dict:
    """``stsmooth train recipe overrides...`` in this process; returns results.json's content."""
    from stsmooth.training import config, train

    return train.run(config.load(recipe, overrides))


def launch_here(runs: list[Run]) -> list[tuple[Run, str]]:
    """Runs one after another in this process; returns the failed ones with a reason."""
    from stsmooth.training.train import NonFiniteLossError

    failed = []
    for i, run in enumerate(runs, 1):
        print(f"sweep [{i}/{len(runs)}] {run.name}: {run.status()}", file=sys.stderr, flush=True)
        try:
            run_one(run.recipe, run.overrides)
        except NonFiniteLossError as err:  # one diverging grid point must not stop the others
            print(f"sweep: {run.name} stopped: {err}", file=sys.stderr)
            failed.append((run, str(err)))
    return failed


def launch_submitit(runs: list[Run], out: Path, cluster: str | None, parameters: dict) -> list[tuple[Run, str]]:
    """Submits every run as a job (Slurm, or local processes) and waits for all of them."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher submitit needs submitit: pip install 'stsmooth[sweep]'") from None
    executor = submitit.AutoExecutor(folder=out / "submitit", cluster=cluster)
    try:
        executor.update_parameters(name=f"sweep-{out.name}", **parameters)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--submitit: {str(err).splitlines()[0]}") from None
    jobs = []
    for run in runs:
        job = executor.submit(run_one, run.recipe, run.overrides)
        print(f"sweep: submitted {run.name} as job {job.job_id}", file=sys.stderr, flush=True)
        jobs.append((run, job))
    failed = []
    for run, job in jobs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - a failed job is reported, the others still count
            lines = [line for line in str(err).splitlines() if line.strip()]
            failed.append((run, lines[-1] if lines else type(err).__name__))
            print(f"sweep: job {job.job_id} ({run.name}) failed: {failed[-1][1]}", file=sys.stderr)
    return failed


# ---------------------------------------------------------------- results


def _flatten(results: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in results.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def collect(spec: Spec, out: Path) -> list[dict]:
    """One row per finished run of ``spec``: axes, seed, results.json's numbers, seconds."""
    rows = []
    for run in plan(spec, out):
        path = run.folder / "results.json"
        if not path.is_file():
            continue
        numbers = _flatten(json.loads(path.read_text()))
        numbers.pop("seed", None)
        seconds = numbers.pop("seconds", None)
        rows.append({**run.point, "seed": run.seed, **numbers, "seconds": seconds})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(c for r in rows for c in r if c != "seconds")) + ["seconds"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def metric_columns(rows: list[dict], axes: list[str]) -> list[str]:
    skip = {*axes, "seed", *NOT_METRICS}
    return [c for c in dict.fromkeys(c for r in rows for c in r) if c not in skip]


def sample_mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value) of a grid point's seeds."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean: float, std: float | None) -> str:
    small = mean != 0 and abs(mean) < 0.01
    text = f"{mean:.3g}" if small else f"{mean:.2f}"
    if std is None:
        return text
    return text + (f" ± {std:.2g}" if small else f" ± {std:.2f}")


def groups(rows: list[dict], axes: list[str]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[a] for a in axes), []).append(r)
    return out


def summary_markdown(spec: Spec, rows: list[dict], command: str, missing: list[str]) -> str:
    """The mean ± std table of a sweep (one row per grid point)."""
    axes = [a for a, _ in spec.axes()]
    metrics = metric_columns(rows, axes)
    lines = [f"# Sweep over {', '.join(axes)}", "", f"Command: `{command}`", "",
             f"Recipe: `{spec.recipe}`; fixed overrides: `{' '.join(spec.overrides) or 'none'}`; "
             f"seeds {', '.join(map(str, spec.seeds))} (set as {', '.join(spec.seed_keys)}). "
             "Each cell: mean ± sample standard deviation over the seeds that finished (n).", ""]
    for name, items in spec.variants.items():
        lines.append(f"- variant **{name}**: `{' '.join(items)}`")
    if spec.variants:
        lines.append("")
    lines.append("| " + " | ".join([*axes, "n", *metrics]) + " |")
    lines.append("|" + "---|" * (len(axes) + 1 + len(metrics)))
    by_point = groups(rows, axes)
    for point in spec.points():
        key = tuple(point[a] for a in axes)
        members = by_point.get(key, [])
        cells = []
        for m in metrics:
            values = [float(r[m]) for r in members if r.get(m) not in (None, "")]
            cells.append(_fmt(*sample_mean_std(values)) if values else "—")
        lines.append("| " + " | ".join([*key, str(len(members)), *cells]) + " |")
    if missing:
        lines += ["", f"Not finished ({len(missing)}): " + ", ".join(f"`{m}`" for m in missing)]
    return "\n".join(lines) + "\n"


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot(spec: Spec, rows: list[dict], metric: str, out: Path) -> Path | None:
    """heatmap.png (two axes) or line.png (one axis) of ``metric``; None for more axes or no data."""
    axes = spec.axes()
    if not rows or len(axes) > 2 or not any(r.get(metric) is not None for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_point = groups(rows, [a for a, _ in axes])

    def stats(key):
        values = [float(r[metric]) for r in by_point.get(key, []) if r.get(metric) is not None]
        return values, (sample_mean_std(values) if values else (math.nan, None))

    n_seeds = max(len(v) for v in by_point.values())
    if len(axes) == 2:
        (row_axis, row_values), (col_axis, col_values) = axes
        grid = np.array([[stats((a, b))[1][0] for b in col_values] for a in row_values])
        fig, ax = plt.subplots(figsize=(1.2 * len(col_values) + 2.5, 0.8 * len(row_values) + 1.8))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(row_values)):
            for j in range(len(col_values)):
                if not math.isnan(grid[i, j]):
                    bright = grid[i, j] > np.nanmean(grid)
                    ax.text(j, i, _fmt(grid[i, j], None), ha="center", va="center",
                            color="black" if bright else "white")
        ax.set_xticks(range(len(col_values)), col_values)
        ax.set_yticks(range(len(row_values)), row_values)
        ax.set_xlabel(col_axis)
        ax.set_ylabel(row_axis)
        fig.colorbar(image, ax=ax, label=metric)
        ax.set_title(f"{metric}, mean of up to {n_seeds} seed(s)")
        path = out / "heatmap.png"
    else:
        ((axis, values),) = axes
        numbers = _as_numbers(values) if axis != "variant" else None
        xs = numbers if numbers is not None else list(range(len(values)))
        fig, ax = plt.subplots(figsize=(6, 4))
        means, lows, highs = [], [], []
        for x, v in zip(xs, values):
            single, (mean, std) = stats((v,))
            ax.scatter([x] * len(single), single, color="gray", s=12, zorder=3)
            means.append(mean)
            lows.append(mean - (std or 0.0))
            highs.append(mean + (std or 0.0))
        ax.plot(xs, means, marker="o", label="mean over seeds")
        ax.fill_between(xs, lows, highs, alpha=0.25, label="± 1 std")
        if numbers is None:
            ax.set_xticks(xs, values)
        ax.set_xlabel(axis)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{metric} over {axis}")
        path = out / "line.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(spec: Spec, out: Path, command: str, metric: str | None = None) -> dict:
    """Writes sweep.csv, summary.md and the plot from the finished runs; returns what it wrote."""
    rows = collect(spec, out)
    missing = [r.name for r in plan(spec, out) if r.status() != "done"]
    write_csv(rows, out / "sweep.csv")
    (out / "summary.md").write_text(summary_markdown(spec, rows, command, missing))
    present = {c for r in rows for c in r}
    chosen = metric or next((m for m in DEFAULT_METRICS if m in present), None)
    if metric and rows and metric not in present:
        raise ValueError(f"--metric {metric!r} is not in results.json; have: {', '.join(metric_columns(rows, []))}")
    figure = plot(spec, rows, chosen, out) if chosen else None
    return {"rows": len(rows), "missing": missing, "plot": figure}


# ---------------------------------------------------------------- command line


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stsmooth sweep RECIPE", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="fixed overrides for every run")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="one axis of the grid (repeat for more axes)")
    p.add_argument("--variant", action="append", nargs="+", default=[], metavar="NAME key=value",
                   help="a named point (set of overrides; recipe=NAME switches the recipe); repeat for more")
    p.add_argument("--seeds", nargs="*", default=None, metavar="S", help="seeds; each grid point runs once per seed")
    p.add_argument("--seed-keys", nargs="+", default=["seed"], metavar="KEY",
                   help="config keys set to the seed (default: seed; add data.split_seed for label splits)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder")
    p.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: one after another in this process (default); submitit: a job per run")
    p.add_argument("--cluster", default=None, help="submitit cluster: slurm, local or debug (default: slurm when "
                   "sbatch exists, else local)")
    p.add_argument("--submitit", action="append", default=[], metavar="KEY=VALUE",
                   help="executor parameter, e.g. timeout_min=120 slurm_partition=gpu gpus_per_node=1")
    p.add_argument("--metric", default=None, help="metric of the plot (default: teacher.knn_top1 or teacher.top1)")
    p.add_argument("--dry-run", action="store_true", help="print the runs' commands and exit")
    return p


def _seeds_and_overrides(args: argparse.Namespace) -> tuple[list[int] | None, list[str]]:
    # ``--seeds 0 1 2 key=value`` also swallows the overrides that follow: give them back.
    overrides = list(args.overrides)
    if args.seeds is None:
        return None, overrides
    seeds = []
    for token in args.seeds:
        if "=" in token:
            overrides.append(token)
            continue
        try:
            seeds.append(int(token))
        except ValueError:
            raise ValueError(f"--seeds: {token!r} is not an integer") from None
    return seeds, overrides


def _parameters(items: list[str]) -> dict:
    """``--submitit KEY=VALUE`` items as a dict, values read by the config's one ``key=value`` parser."""
    from omegaconf import OmegaConf

    from stsmooth.training import config

    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--submitit {item!r} is not of the form KEY=VALUE (e.g. timeout_min=120)")
    return OmegaConf.to_container(config.parse_overrides(items)) if items else {}


def main(recipe: Path, argv: list[str], resolve=Path) -> int:
    """``stsmooth sweep RECIPE ...`` after the recipe is resolved. Returns the exit status.

    ``resolve`` maps a variant's ``recipe=NAME`` to a path.

    Raises:
        ValueError: bad input (one line).
    """
    args = arguments().parse_intermixed_args(argv)
    seeds, overrides = _seeds_and_overrides(args)
    if args.launcher != "submitit" and (args.submitit or args.cluster):
        raise ValueError("--submitit and --cluster apply to --launcher submitit only")
    parameters = _parameters(args.submitit)
    spec = make_spec(Path(recipe), parse_grid(args.grid), parse_variants(args.variant), seeds, overrides,
                     args.seed_keys, resolve)
    out = Path(args.out)
    spec = merge_with_folder(spec, out)
    runs = plan(spec, out, seeds)
    from stsmooth.training import config

    for run in runs:  # every combination loads (a variant may switch method or recipe)
        try:
            config.load(run.recipe, run.overrides)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"run {run.name}: {err}") from None
    todo = [r for r in runs if r.status() != "done"]
    if args.dry_run:
        for run in runs:
            print(("# done: " if run.status() == "done" else "") + run.command())
        print(f"# {len(todo)} of {len(runs)} runs to do, in {out}", file=sys.stderr)
        return 0
    save_spec(spec, out)
    print(f"sweep: {len(runs)} runs ({len(runs) - len(todo)} done, "
          f"{sum(r.status() == 'resume' for r in todo)} to resume) in {out}", file=sys.stderr)
    if args.launcher == "submitit":
        failed = launch_submitit(todo, out, args.cluster, parameters)
    else:
        failed = launch_here(todo)
    command = shlex.join(["stsmooth", "sweep", str(recipe), *argv])
    written = report(spec, out, command, args.metric)
    print(f"sweep: {written['rows']} finished runs -> {out / 'sweep.csv'}, {out / 'summary.md'}"
          + (f", {written['plot']}" if written["plot"] else ""), file=sys.stderr)
    if failed:
        print(f"sweep: {len(failed)} run(s) failed: {', '.join(r.name for r, _ in failed)}", file=sys.stderr)
        return 1
    return 0
