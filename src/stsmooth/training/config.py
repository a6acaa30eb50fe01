"""Typed run configuration: recipes (YAML) + ``key=value`` overrides.

A run is described by one :class:`RunConfig`. It is built from three layers,
later ones winning: the structured schema's defaults (the dataclasses below),
a recipe (a YAML file shipped in ``stsmooth/recipes/``, named by its stem, or
any YAML path) and dotted command-line overrides such as
``teacher.preserve_prob=0.7``. OmegaConf's structured mode checks every key and
every type; its errors are turned into one-line ``ValueError`` s that name the
nearest valid key (``difflib``).

Per-method sections (``byol``, ``moco``, ``fixmatch``, ...) are each method
file's ``Config`` dataclass, so a method owns its own hyper-parameters; a new
method adds one line to :class:`RunConfig` (and one to
:data:`stsmooth.methods.METHODS`). The lists of allowed values live with the
code that uses them (granularities in the core's rule, BN modes in
:mod:`stsmooth.core.norm`, schedules in :mod:`stsmooth.core.schedules`,
optimisers in :mod:`stsmooth.training.optim`); this file only checks them.

Default values are those of the papers: 000 = STS (Huang et al.), 003 = EMAN
(Cai et al.), 004 = Mean Teacher (Tarvainen & Valpola).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf import errors as oc_errors

from stsmooth.core.norm import NORMS
from stsmooth.core.smoothing import GRANULARITIES
from stsmooth.data.splits import UNLABELED
from stsmooth.methods import METHODS, byol, fixmatch, mean_teacher, moco, supervised, temporal_ensembling
from stsmooth.training import loggers, optim
from stsmooth.training.parallel import PARALLEL

MOMENTUM_SCHEDULES = ("constant", "cosine", "mean_teacher", "two_phase", "linear")  # of core.schedules
PRESERVE_SCHEDULES = ("constant", "cosine", "linear")  # p needs no warm-up or phase switch
NORM_BASELINES = ("none", "shufflebn", "syncbn")


@dataclass
class DataConfig:
    """Which images to train on (see :mod:`stsmooth.data`)."""

    name: str = "digits"  # digits|mnist|cifar10|cifar100|svhn|stl10|npz|folder
    root: Optional[str] = None  # folder/file of the data set; None = the loader's default
    download: bool = False  # fetch (checksum-verified) when missing
    image_size: int = 0  # side of the training crops; 0 = the data set's native size (folder: its images' one size)
    channels: int = 0  # folder only: 1 (grayscale) or 3 (RGB); 0 = 1 when every image is grayscale, else 3
    train_split: str = "train"  # stl10 self-supervised: "unlabeled"
    test_split: str = "test"  # split used for kNN / accuracy evaluation
    labels_per_class: Optional[int] = None  # semi-supervised: e.g. 4 for CIFAR-10@40 (000 Table 6)
    label_fraction: Optional[float] = None  # semi-supervised: e.g. 0.1 for ImageNet 10% (003 §5.3)
    split_seed: int = 0  # seeds 0/1/2 give the three standard label splits (000 §4.5)
    unlabeled: str = "all"  # all: labeled images also feed the unlabeled loss (FixMatch) | rest
    unlabeled_split: Optional[str] = None  # extra unlabeled split: stl10 "unlabeled", svhn "extra"
    decode_size: int = 0  # folder: decode side before cropping; 0 = image_size * 8 / 7 (256 for 224),
    #                       or the images' own size when image_size comes from the folder
    num_workers: Optional[int] = None  # folder data sets only: decoding workers; None = this rank's share of the cores
    skip_bad_images: bool = False  # folder: skip (and count) images that cannot be decoded instead of stopping


@dataclass
class ModelConfig:
    """The backbone (see :func:`stsmooth.models.build`)."""

    name: str = "resnet18"  # 000 §4.1: resnet50 on ImageNet; resnet18 for CIFAR variants
    options: Dict[str, Any] = field(default_factory=dict)  # e.g. {stem: cifar} or {dropout: 0.5}


@dataclass
class AugmentConfig:
    """Options passed to the method's augmentation recipes (see :mod:`stsmooth.augment`).

    ``None`` keeps each recipe's own (paper) default; a value is given to every
    recipe that has the option. ``recipes`` sets options of one recipe only.
    """

    flip: Optional[bool] = None  # SimCLR/BYOL/FixMatch horizontal flip (True); digits: false
    crop_scale: Optional[List[float]] = None  # crop area range; BYOL [0.08, 1], MoCo v2 [0.2, 1]
    blur: Optional[bool] = None  # Gaussian blur (BYOL p=1.0/0.1, MoCo v2 p=0.5); off for tiny images
    color: Optional[bool] = None  # colour jitter + grayscale; off for 1-channel images
    recipes: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # e.g. {byol2: {solarize_p: 0.0}}
    eval_crop_fraction: float = 1.0  # evaluation centre crop (ImageNet: 0.875 = 224 of 256)


@dataclass
class TeacherConfig:
    """How the teacher is made from the student (Eq. 3 of 000, EMAN of 003)."""

    momentum: float = 0.99  # m; 000 §4.1 BYOL: 0.99 -> 1 (cosine); MoCo 0.999; 003 BYOL 0.98
    preserve_prob: float = 0.7  # p; 000 §4.1: 0.7 BYOL / 0.5 MoCo / 0.5 FixMatch; 0 = TMA
    granularity: str = "layer"  # tensor|layer|channel|neuron; 000 §4.3 default: layer
    norm: str = "eman"  # eman|batch|copy|own (003 Table 1 / Table 8)
    momentum_schedule: str = "constant"  # constant|cosine|mean_teacher|two_phase|linear
    momentum_final: float = 1.0  # end value of cosine/linear/two_phase (BYOL: 1.0; 004: 0.999)
    momentum_switch_epochs: float = 0.0  # two_phase: epochs at the first value (004 §3.4 ramp-up)
    preserve_schedule: str = "constant"  # constant|cosine|linear
    preserve_final: float = 0.7  # end value of the p schedule
    seed: Optional[int] = None  # seed of the spatial-ensemble draws (same on all ranks); None = the run's seed


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: str = "sgd"  # sgd|lars; 000 §4.1 SGD; 003 BYOL-EMAN LARS
    lr: float = 0.1  # 000 §4.1 BYOL 0.1 at batch 256; MoCo v2 0.03; 003 BYOL 0.9 at 512
    momentum: float = 0.9  # 000 §4.1
    weight_decay: float = 1e-4  # 000 §4.1 (FixMatch CIFAR-10 5e-4)
    nesterov: bool = False  # FixMatch: true
    exclude_bias_bn: bool = False  # no weight decay / LARS scaling on biases and BN (BYOL; FixMatch releases)
    lars_eta: float = 0.001  # LARS trust coefficient (You et al. 2017)
    schedule: str = "cosine"  # cosine|constant|step|fixmatch (cos(7 pi k / 16 K))
    milestones: List[float] = field(default_factory=list)  # step: epochs where lr *= 0.1
    warmup_epochs: float = 10.0  # 000 §4.1 BYOL: 10 epochs
    warmup_factor: float = 0.001  # 000 §4.1: warm-up starts at 0.001 x lr
    batch_size: int = 256  # global batch (labeled batch for semi-supervised); 000 §4.1: 256
    epochs: int = 200  # 000 §4.2: 200 epochs
    steps_per_epoch: int = 0  # 0 = one pass over the training set
    grad_clip: float = 0.0  # 0 = off


@dataclass
class EvalConfig:
    """Evaluation cadence during training."""

    every_epochs: int = 10  # kNN / accuracy every N epochs (and always at the end)
    at_start: bool = False  # also evaluate the random initialisation (reference line)
    knn_k: int = 20  # 003 §5: k = 20
    knn_t: float = 0.07  # kNN temperature (Wu et al. 2018)
    bank_size: int = 0  # training images in the kNN bank; 0 = all (003 §5.1 uses 10%)
    probe_size: int = 256  # fixed images for the output-smoothness measure (000 Fig. 3)
    batch_size: int = 256  # feature extraction batch


@dataclass
class CheckpointConfig:
    """When ``checkpoints/last.pt`` is written besides every epoch's end (see README "Reliability")."""

    every_steps: int = 0  # also every N optimiser steps; 0 = off
    every_minutes: float = 0.0  # also when this much wall time passed since the last one; 0 = off
    keep: int = 1  # checkpoints kept: last.pt and keep - 1 earlier ones as step_<step>.pt


@dataclass
class DistConfig:
    """Multi-process runs (torchrun)."""

    timeout_minutes: float = 10.0  # a collective waiting this long for a hung peer ends the run


@dataclass
class RunConfig:
    """One training run: every key a recipe or an override may set, with its default.

    The values come from three layers, later ones winning: these defaults
    (the papers' values), the recipe (``stsmooth/recipes/*.yaml``) and ``key=value``
    overrides; :func:`load` merges them and :func:`validate` checks them.
    """

    method: str = "byol"  # byol|moco|fixmatch|mean_teacher|temporal_ensembling|supervised: a key of METHODS
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    norm_baseline: str = "none"  # none|shufflebn|syncbn: 003 Table 1 baselines (teacher.norm=batch)
    out: str = "runs/default"  # run folder
    seed: int = 0
    resume: bool = False  # continue from {out}/checkpoints/last.pt
    compile: bool = False  # torch.compile the student
    parallel: str = "ddp"  # ddp|fsdp: under torchrun, DDP replicas or FSDP2-sharded student and teacher (training/parallel.py)
    amp: bool = True  # bf16 autocast + channels_last on CUDA (no effect on CPU)
    device: str = "auto"  # auto|cpu|cuda|cuda:N
    progress: bool = True  # tqdm bar on the main rank
    export: bool = True  # write teacher/student safetensors at the end
    log: str = "tensorboard"  # experiment logs besides metrics.csv: tensorboard,mlflow,wandb,none (comma-separated)
    log_project: str = "stsmooth"  # MLflow experiment / W&B project
    # One section per method (each method file's Config); only the section of `method` is read.
    byol: byol.Config = field(default_factory=byol.Config)  # methods/byol.py (BYOL §3.3, 000 §4.1)
    moco: moco.Config = field(default_factory=moco.Config)  # methods/moco.py (MoCo v2, 000 §4.1)
    fixmatch: fixmatch.Config = field(default_factory=fixmatch.Config)  # methods/fixmatch.py (000 §4.1, 003 §4.1)
    mean_teacher: mean_teacher.Config = field(default_factory=mean_teacher.Config)  # methods/mean_teacher.py (004)
    temporal_ensembling: temporal_ensembling.Config = field(
        default_factory=temporal_ensembling.Config)  # methods/temporal_ensembling.py (Laine & Aila 2017)
    supervised: supervised.Config = field(default_factory=supervised.Config)  # methods/supervised.py (004 baseline)


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(node):
        full = f"{prefix}{f.name}"
        keys.append(full)
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(_valid_keys(value, full + "."))
    return keys


def valid_keys() -> list[str]:
    """All dotted keys of the schema, e.g. ``["method", "data", "data.name", ...]``."""
    return _valid_keys(RunConfig())


def nearest_key(key: str) -> Optional[str]:
    """The valid dotted key closest to ``key`` (difflib), or None."""
    keys = valid_keys()
    hit = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if hit:
        return hit[0]
    # A wrong section with a right leaf ("optimizer.lr") is still worth a hint.
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
    hit = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.7)
    return by_leaf[hit[0]] if hit else None


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, DictConfig):
        out = []
        for k in node.keys():
            out += _flat_keys(node._get_node(k), f"{prefix}{k}.")
        return out or [prefix[:-1]]
    return [prefix[:-1]]


def _friendly(err: oc_errors.OmegaConfBaseException, source: str, layer: DictConfig | None = None) -> ValueError:
    key = getattr(err, "full_key", None) or ""
    if layer is not None and key:
        # OmegaConf names the first unknown level ("optimizer"); report the key as written.
        written = [k for k in _flat_keys(layer) if k == key or k.startswith(key + ".")]
        key = written[0] if written else key
    msg = getattr(err, "msg", None) or str(err).splitlines()[0]
    if isinstance(err, (oc_errors.ConfigKeyError, oc_errors.ConfigAttributeError)) and "not in" in msg:
        near = nearest_key(key)
        hint = f"; did you mean '{near}'?" if near else ""
        return ValueError(f"unknown config key '{key}' ({source}){hint}")
    msg = msg.splitlines()[0]
    return ValueError(f"bad value for config key '{key}' ({source}): {msg}")


def _check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ValueError(f"{key}={value!r} is not one of {', '.join(map(str, allowed))}{hint}")


def validate(cfg: RunConfig) -> None:
    """Checks value ranges and names the schema's types cannot express; the method checks its own section.

    Raises:
        ValueError: one line naming the key, the value and what is allowed.
    """
    _check_choice("method", cfg.method, tuple(METHODS))
    METHODS[cfg.method].validate(method_config(cfg))
    t = cfg.teacher
    _check_choice("teacher.granularity", t.granularity, GRANULARITIES)
    _check_choice("teacher.norm", t.norm, NORMS)
    _check_choice("teacher.momentum_schedule", t.momentum_schedule, MOMENTUM_SCHEDULES)
    _check_choice("teacher.preserve_schedule", t.preserve_schedule, PRESERVE_SCHEDULES)
    for key in ("momentum", "preserve_prob", "momentum_final", "preserve_final"):
        value = getattr(t, key)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"teacher.{key}={value} must lie in [0, 1]")
    o = cfg.optim
    _check_choice("optim.name", o.name, optim.OPTIMIZERS)
    _check_choice("optim.schedule", o.schedule, optim.LR_SCHEDULES)
    _check_choice("norm_baseline", cfg.norm_baseline, NORM_BASELINES)
    loggers.parse(cfg.log)
    if o.lr <= 0 or o.batch_size <= 0 or o.epochs <= 0:
        raise ValueError(f"optim.lr={o.lr}, optim.batch_size={o.batch_size}, optim.epochs={o.epochs} must be > 0")
    if o.steps_per_epoch < 0 or o.warmup_epochs < 0:
        raise ValueError("optim.steps_per_epoch and optim.warmup_epochs must be >= 0")
    crop = cfg.augment.crop_scale
    if crop is not None and (len(crop) != 2 or not 0 < crop[0] <= crop[1] <= 1):
        raise ValueError(f"augment.crop_scale={list(crop)} must be [low, high] with 0 < low <= high <= 1")
    e = cfg.eval
    if e.every_epochs < 0 or e.knn_k <= 0 or e.probe_size <= 0 or e.batch_size <= 0:
        raise ValueError(f"eval.every_epochs={e.every_epochs} must be >= 0; eval.knn_k={e.knn_k}, "
                         f"eval.probe_size={e.probe_size} and eval.batch_size={e.batch_size} must be > 0")
    c = cfg.checkpoint
    if c.every_steps < 0 or c.every_minutes < 0 or c.keep < 1:
        raise ValueError(f"checkpoint.every_steps={c.every_steps} and checkpoint.every_minutes={c.every_minutes} "
                         f"must be >= 0 (0 = off), checkpoint.keep={c.keep} must be >= 1")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ValueError(f"device={cfg.device!r} is not one of auto, cpu, cuda, cuda:N")
    d = cfg.data
    if d.labels_per_class is not None and d.label_fraction is not None:
        raise ValueError("set only one of data.labels_per_class and data.label_fraction")
    _check_choice("data.unlabeled", d.unlabeled, UNLABELED)
    _check_choice("data.channels", d.channels, (0, 1, 3))
    if d.channels and d.name != "folder":
        raise ValueError(f"data.channels={d.channels} applies to data.name=folder only (data.name={d.name!r} "
                         f"has its own channels); leave it 0")
    if d.root is not None and d.name == "digits":
        raise ValueError(f"data.root={d.root!r} is given but data.name=digits is bundled with scikit-learn and reads "
                         f"no files; drop data.root or set data.name (npz, folder, mnist, ...)")
    if d.num_workers is not None and d.num_workers < 0:
        raise ValueError(f"data.num_workers={d.num_workers} must be >= 0 (or null: this rank's share of the cores)")
    if cfg.dist.timeout_minutes <= 0:
        raise ValueError(f"dist.timeout_minutes={cfg.dist.timeout_minutes} must be > 0")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"out={cfg.out!r} is a file; out= names the run's folder")
    if d.image_size < 0 or d.decode_size < 0:
        raise ValueError(f"data.image_size={d.image_size} and data.decode_size={d.decode_size} must be >= 0")
    _check_choice("parallel", cfg.parallel, PARALLEL)
    if cfg.parallel == "fsdp" and cfg.norm_baseline == "shufflebn":
        raise ValueError(f"parallel=fsdp does not support norm_baseline=shufflebn with teacher.norm={t.norm} "
                         f"(ShuffleBN forwards other ranks' samples through the sharded teacher); use parallel=ddp")
    if cfg.norm_baseline == "shufflebn" and t.norm != "batch":
        raise ValueError(f"norm_baseline=shufflebn needs teacher.norm=batch (ShuffleBN normalises with batch "
                         f"statistics), got teacher.norm={t.norm!r}")


def parse_overrides(overrides: list[str]) -> DictConfig:
    """``["a.b=1", ...]`` -> DictConfig, values read as YAML; the one ``key=value`` parser of the project.

    Raises:
        ValueError: a token without ``=``, or a value that does not parse (naming the token).
    """
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. teacher.momentum=0.99)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (oc_errors.OmegaConfBaseException, yaml.YAMLError) as err:
        raise ValueError(f"overrides {' '.join(overrides)} do not parse: {str(err).splitlines()[0]}") from None


def recipes_dir() -> Path:
    """The folder of the packaged recipes, ``stsmooth/recipes/`` (read through ``importlib.resources``).

    Raises:
        FileNotFoundError: the package is installed in a form without a folder (e.g. a zip).
    """
    folder = importlib.resources.files("stsmooth") / "recipes"
    if not isinstance(folder, Path):  # a zipped install: the loader needs real files
        raise FileNotFoundError(f"the packaged recipes are not a folder ({folder}); install stsmooth unzipped")
    return folder


def recipe_names() -> list[str]:
    """Names of the packaged recipes (file stems), sorted, e.g. ``["byol_digits", ...]``."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe given by path, or by the name of a packaged recipe (``"byol_digits"`` or ``"byol_digits.yaml"``).

    An existing file wins over a packaged recipe of the same name.

    Raises:
        FileNotFoundError: neither a file nor a packaged recipe; names the nearest recipes (``difflib``).
    """
    path = Path(recipe)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path("."):
        packaged = recipes_dir() / f"{name}.yaml"
        if packaged.is_file():
            return packaged
    near = difflib.get_close_matches(name, recipe_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise FileNotFoundError(f"recipe {str(recipe)!r} not found: neither a YAML file nor a packaged recipe name"
                            f"{hint} (stsmooth recipes lists them)")


_VARIANT = re.compile(r"^#\s+stsmooth train (\S+)((?:\s+\S+=\S+)+)\s*$")


def recipe_notes(recipe: str | Path) -> dict:
    """The header's ``# paper:`` line and its documented variants (one command each, then its reason).

    Returns:
        ``{"paper": str, "variants": [(overrides, reason), ...]}``; ``overrides`` is a list of
        ``key=value`` strings for :func:`load`.
    """
    path = recipe_path(recipe)
    lines = path.read_text().splitlines()
    paper, variants = "", []
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        if line.startswith("# paper:"):
            paper = line.partition(":")[2].strip()
        hit = _VARIANT.match(line)
        if hit and hit.group(1) == path.stem:
            reason = lines[i + 1].lstrip("# ").strip() if i + 1 < len(lines) else ""
            variants.append((hit.group(2).split(), reason))
    return {"paper": paper, "variants": variants}


def teacher_rule(t: TeacherConfig) -> str:
    """A short name of the teacher rule (000 Eq. 3): none, TMA, SE or STS, with m, p, granularity and BN mode."""
    moving = t.momentum > 0 or (t.momentum_schedule != "constant" and t.momentum_final > 0)
    rule = {(False, False): "none", (True, False): "TMA", (False, True): "SE", (True, True): "STS"}[
        (moving, t.preserve_prob > 0)]
    m = f"{t.momentum:g}" if t.momentum_schedule == "constant" else \
        f"{t.momentum:g}->{t.momentum_final:g} {t.momentum_schedule}"
    p = f", p {t.preserve_prob:g} {t.granularity}" if t.preserve_prob > 0 else ""
    return f"{rule} (m {m}{p}, BN {t.norm})"


def describe_recipe(recipe: str | Path) -> str:
    """One line: name, method, data, model, teacher rule, paper (what ``stsmooth recipes`` prints)."""
    path = recipe_path(recipe)
    cfg = load(path)
    paper = recipe_notes(path)["paper"] or "-"
    return (f"{path.stem:24s} {cfg.method:13s} {cfg.data.name:9s} {cfg.model.name:11s} "
            f"{teacher_rule(cfg.teacher):46s} {paper}")


def load(recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Builds a validated :class:`RunConfig` from a recipe and overrides.

    Args:
        recipe: a YAML path, the name of a packaged recipe (``"byol_digits"``; see
            :func:`recipe_path`), or None for the defaults.
        overrides: dotted ``key=value`` strings, applied after the recipe.

    Returns:
        A ``RunConfig`` dataclass instance (typed attributes).

    Raises:
        FileNotFoundError: the recipe does not exist (naming the nearest packaged recipes).
        ValueError: unknown key (with the nearest valid key), wrong type or bad value.
    """
    merged = OmegaConf.structured(RunConfig)
    if recipe is not None:
        path = recipe_path(recipe)
        layer = OmegaConf.load(path)
        if not isinstance(layer, DictConfig):
            raise ValueError(f"recipe {str(path)!r} must be a YAML mapping, not a list")
        merged = _merge(merged, layer, f"in {path.name}")
    if overrides:
        merged = _merge(merged, parse_overrides(list(overrides)), "in overrides")
    return _finish(merged)


def _merge(base: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except oc_errors.OmegaConfBaseException as err:
        raise _friendly(err, source, layer) from None


def from_dict(data: dict, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Rebuilds a RunConfig from a plain dict (e.g. the one stored in a checkpoint), then overrides."""
    merged = _merge(OmegaConf.structured(RunConfig), OmegaConf.create(data), "in stored config")
    if overrides:
        merged = _merge(merged, parse_overrides(list(overrides)), "in overrides")
    return _finish(merged)


def _finish(merged: DictConfig) -> RunConfig:
    cfg = OmegaConf.to_object(merged)
    validate(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    """Plain nested dict of ``cfg`` (only str/int/float/bool/None/list/dict)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML (what a run folder's ``config.yaml`` holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save(cfg: RunConfig, path: str | Path) -> None:
    """Writes ``cfg`` as YAML to ``path``."""
    Path(path).write_text(to_yaml(cfg))


def method_config(cfg: RunConfig) -> Any:
    """The section of the selected method, e.g. ``cfg.byol`` when ``cfg.method == "byol"``."""
    return getattr(cfg, cfg.method)
