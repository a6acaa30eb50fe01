"""Every recipe's key values against a table of their sources (papers 000/003/004 and the releases).

A row is a recipe file, or a variant: a recipe plus the one-key override its header documents
(``stsmooth train byol_sts_cifar10 teacher.preserve_prob=0`` replaced ``byol_tma_cifar10.yaml``).

Sources of the table (checked by reading the release code):

* EMAN release, amazon-science/exponential-moving-average-normalization: README commands
  (BYOL-EMAN ``--byol-m 0.98 --warmup-epoch 10``; MoCo-EMAN ``--warmup-epoch 10 --moco-t 0.2 --cos``;
  FixMatch-EMAN ``--eman --lr 0.03 --epochs 100 --schedule 60 80 --warmup-epoch 5`` with
  ``train_10p/train_90p`` index files), ``main_fixmatch.py`` defaults (``--threshold 0.7``,
  ``--lambda-u 10``, ``--nesterov`` False, ``--wd 1e-4``, ``--mu 5``, SGD over all parameters),
  ``models/byol.py`` ``BYOLEMAN.momentum_update`` (m: cosine from --byol-m to 1),
  ``utils/lr_schedule.py`` (warm-up from 0), ``data/transforms.py`` (BYOL crops scale (0.2, 1)).
* FixMatch releases: kekmodel/FixMatch-pytorch ``train.py`` (``no_decay = ['bias', 'bn']``, Nesterov,
  lr 0.03, wd 5e-4 / 1e-3, EMA 0.999, mu 7, lambda_u 1, threshold 0.95); google-research/fixmatch
  ``fixmatch.py`` (L2 on kernels only).
* Mean Teacher release, CuriousAI/mean-teacher ``pytorch/main.py``: ``ema_model.train()`` and
  ``update_ema_variables`` averages parameters only, so the teacher's BatchNorm uses batch statistics
  and keeps its own running statistics (``teacher.norm=batch``).
"""

from pathlib import Path

import pytest

from stsmooth.training import config, train

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "src/stsmooth/recipes").glob("*.yaml"))

# Variants that were recipe files of their own: row name -> (recipe, the overrides its header documents).
VARIANTS = {
    "byol_tma_cifar10": ("byol_sts_cifar10", ["teacher.preserve_prob=0", "out=runs/byol_tma_cifar10"]),
    "byol_tma_imagenet": ("byol_sts_imagenet", ["teacher.preserve_prob=0", "out=runs/byol_tma_imagenet"]),
    "moco_tma_cifar10": ("moco_sts_cifar10", ["teacher.preserve_prob=0", "out=runs/moco_tma_cifar10"]),
    "moco_tma_imagenet": ("moco_sts_imagenet", ["teacher.preserve_prob=0", "out=runs/moco_tma_imagenet"]),
    "fixmatch_cifar10_sts": ("fixmatch_cifar10", ["teacher.preserve_prob=0.5"]),
    "fixmatch_cifar100_sts": ("fixmatch_cifar100", ["teacher.preserve_prob=0.5"]),
    "fixmatch_eman_cifar10_sts": ("fixmatch_eman_cifar10", ["teacher.preserve_prob=0.5"]),
    "mean_teacher_cifar10_eman": ("mean_teacher_cifar10", ["teacher.norm=eman"]),
    "mean_teacher_svhn_eman": ("mean_teacher_svhn", ["teacher.norm=eman"]),
}

# Shared rows, then one entry per recipe (dotted key -> value).
BYOL_000 = {"method": "byol", "teacher.momentum": 0.99, "teacher.momentum_schedule": "cosine",
            "teacher.momentum_final": 1.0, "teacher.granularity": "layer", "teacher.norm": "batch",
            "norm_baseline": "syncbn", "optim.name": "sgd", "optim.lr": 0.1, "optim.momentum": 0.9,
            "optim.weight_decay": 1e-4, "optim.batch_size": 256, "optim.epochs": 200, "optim.warmup_epochs": 10,
            "optim.warmup_factor": 0.001, "optim.schedule": "cosine", "byol.projector_hidden": 4096,
            "byol.projector_out": 256, "byol.predictor_hidden": 4096}
BYOL_EMAN = {"method": "byol", "teacher.momentum": 0.98, "teacher.momentum_schedule": "cosine",
             "teacher.momentum_final": 1.0, "teacher.preserve_prob": 0.0, "teacher.norm": "eman",
             "norm_baseline": "none", "optim.name": "lars", "optim.lr": 0.9, "optim.momentum": 0.9,
             "optim.weight_decay": 1.5e-6, "optim.exclude_bias_bn": True, "optim.lars_eta": 0.001,
             "optim.batch_size": 512, "optim.epochs": 200, "optim.warmup_epochs": 10, "optim.warmup_factor": 0.0,
             "optim.schedule": "cosine", "augment.crop_scale": [0.2, 1.0]}
MOCO_000 = {"method": "moco", "teacher.momentum": 0.999, "teacher.momentum_schedule": "constant",
            "teacher.granularity": "layer", "teacher.norm": "batch", "norm_baseline": "shufflebn",
            "optim.name": "sgd", "optim.lr": 0.03, "optim.momentum": 0.9, "optim.weight_decay": 1e-4,
            "optim.batch_size": 256, "optim.epochs": 200, "optim.warmup_epochs": 0, "optim.schedule": "cosine",
            "moco.temperature": 0.2}
MOCO_EMAN = {"method": "moco", "teacher.momentum": 0.999, "teacher.momentum_schedule": "constant",
             "teacher.preserve_prob": 0.0, "teacher.norm": "eman", "norm_baseline": "none", "optim.name": "sgd",
             "optim.lr": 0.03, "optim.momentum": 0.9, "optim.weight_decay": 1e-4, "optim.batch_size": 256,
             "optim.epochs": 200, "optim.warmup_epochs": 10, "optim.warmup_factor": 0.0,
             "optim.schedule": "cosine", "moco.temperature": 0.2}
FIXMATCH = {"method": "fixmatch", "teacher.momentum": 0.999, "teacher.granularity": "layer", "optim.name": "sgd",
            "optim.lr": 0.03, "optim.momentum": 0.9, "optim.nesterov": True, "optim.exclude_bias_bn": True,
            "optim.schedule": "fixmatch", "optim.warmup_epochs": 0, "optim.batch_size": 64, "optim.epochs": 1024,
            "optim.steps_per_epoch": 1024, "fixmatch.threshold": 0.95, "fixmatch.lambda_u": 1.0,
            "fixmatch.mu": 7}
CIFAR10 = {"data.name": "cifar10", "model.name": "wrn28_2", "optim.weight_decay": 5e-4}
CIFAR100 = {"data.name": "cifar100", "model.name": "wrn28_8", "optim.weight_decay": 1e-3}
CONVNET_SGD = {"model.name": "convnet13", "optim.name": "sgd", "optim.lr": 0.05, "optim.momentum": 0.9,
               "optim.nesterov": True, "optim.weight_decay": 2e-4, "optim.batch_size": 32, "optim.epochs": 300,
               "optim.steps_per_epoch": 500}
MT_004 = {**CONVNET_SGD, "method": "mean_teacher", "teacher.momentum": 0.99, "teacher.momentum_schedule": "two_phase",
          "teacher.momentum_final": 0.999, "teacher.momentum_switch_epochs": 80.0, "teacher.preserve_prob": 0.0,
          "mean_teacher.consistency": "mse", "mean_teacher.consistency_weight": 100.0,
          "mean_teacher.rampup_steps": 40000, "mean_teacher.mu": 3}
EVAL_TEACHER_004 = {"teacher.momentum": 0.99, "teacher.momentum_schedule": "two_phase",
                    "teacher.momentum_final": 0.999, "teacher.momentum_switch_epochs": 80.0,
                    "teacher.preserve_prob": 0.0, "teacher.norm": "eman"}
DIGITS_SEMI = {"data.name": "digits", "data.labels_per_class": 3, "model.name": "digits_cnn", "optim.batch_size": 16,
               "optim.epochs": 10, "optim.steps_per_epoch": 50, "optim.lr": 0.03, "optim.nesterov": True,
               "optim.weight_decay": 5e-4, "teacher.preserve_prob": 0.0}
FASHION_SEMI = {"data.name": "fashion_mnist", "model.name": "fmnist_cnn", "augment.flip": True, "optim.name": "sgd",
                "optim.lr": 0.03, "optim.momentum": 0.9, "optim.nesterov": True, "optim.weight_decay": 5e-4,
                "optim.batch_size": 32, "optim.epochs": 10, "optim.steps_per_epoch": 100,
                "augment.recipes": {"mean_teacher": {"shift": 2, "noise": 0.15}}}

TABLE = {
    "byol_digits": {"method": "byol", "teacher.momentum": 0.9, "teacher.momentum_schedule": "cosine",
                    "teacher.preserve_prob": 0.7, "optim.lr": 0.1, "optim.batch_size": 128, "optim.epochs": 30,
                    "augment.crop_scale": [0.7, 1.0]},
    "byol_eman_cifar10": {**BYOL_EMAN, "data.name": "cifar10", "model.name": "resnet18"},
    "byol_eman_imagenet": {**BYOL_EMAN, "data.name": "folder", "model.name": "resnet50",
                           "augment.eval_crop_fraction": 0.875},
    "byol_sts_cifar10": {**BYOL_000, "teacher.preserve_prob": 0.7, "data.name": "cifar10", "model.name": "resnet18"},
    "byol_sts_imagenet": {**BYOL_000, "teacher.preserve_prob": 0.7, "data.name": "folder", "model.name": "resnet50"},
    "byol_tma_cifar10": {**BYOL_000, "teacher.preserve_prob": 0.0, "data.name": "cifar10", "model.name": "resnet18"},
    "byol_tma_imagenet": {**BYOL_000, "teacher.preserve_prob": 0.0, "data.name": "folder", "model.name": "resnet50"},
    "fixmatch_cifar10": {**FIXMATCH, **CIFAR10, "teacher.preserve_prob": 0.0, "data.labels_per_class": 400,
                         "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_cifar10_sts": {**FIXMATCH, **CIFAR10, "teacher.preserve_prob": 0.5, "data.labels_per_class": 400,
                             "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_cifar100": {**FIXMATCH, **CIFAR100, "teacher.preserve_prob": 0.0, "data.labels_per_class": 100,
                          "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_cifar100_sts": {**FIXMATCH, **CIFAR100, "teacher.preserve_prob": 0.5, "data.labels_per_class": 100,
                              "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_svhn": {**FIXMATCH, "data.name": "svhn", "model.name": "wrn28_2", "optim.weight_decay": 5e-4,
                      "teacher.preserve_prob": 0.0, "augment.flip": False, "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_stl10": {**FIXMATCH, "data.name": "stl10", "optim.weight_decay": 5e-4, "teacher.preserve_prob": 0.0,
                       "data.unlabeled_split": "unlabeled", "fixmatch.pseudo_labels_from": "student"},
    "fixmatch_eman_cifar10": {**FIXMATCH, **CIFAR10, "teacher.preserve_prob": 0.0, "teacher.norm": "eman",
                              "fixmatch.pseudo_labels_from": "teacher"},
    "fixmatch_eman_cifar10_sts": {**FIXMATCH, **CIFAR10, "teacher.preserve_prob": 0.5, "teacher.norm": "eman",
                                  "fixmatch.pseudo_labels_from": "teacher"},
    "fixmatch_eman_imagenet": {"method": "fixmatch", "data.name": "folder", "data.label_fraction": 0.1,
                               "data.unlabeled": "rest", "model.name": "resnet50", "teacher.momentum": 0.999,
                               "teacher.preserve_prob": 0.0, "teacher.norm": "eman", "optim.name": "sgd",
                               "optim.lr": 0.03, "optim.momentum": 0.9, "optim.nesterov": False,
                               "optim.weight_decay": 1e-4, "optim.exclude_bias_bn": False, "optim.schedule": "step",
                               "optim.milestones": [60.0, 80.0], "optim.warmup_epochs": 5, "optim.warmup_factor": 0.0,
                               "optim.batch_size": 64, "optim.epochs": 100, "augment.eval_crop_fraction": 0.875,
                               "fixmatch.pseudo_labels_from": "teacher", "fixmatch.threshold": 0.7,
                               "fixmatch.lambda_u": 10.0, "fixmatch.mu": 5},
    "fixmatch_digits": {**DIGITS_SEMI, "method": "fixmatch", "teacher.momentum": 0.95, "fixmatch.threshold": 0.95,
                        "fixmatch.lambda_u": 1.0, "fixmatch.mu": 4},
    "mean_teacher_cifar10": {**MT_004, "data.name": "cifar10", "data.labels_per_class": 400, "augment.flip": True,
                             "teacher.norm": "batch", "mean_teacher.targets_from": "teacher"},
    "mean_teacher_svhn": {**MT_004, "data.name": "svhn", "data.labels_per_class": 25, "augment.flip": False,
                          "teacher.norm": "batch", "mean_teacher.targets_from": "teacher"},
    "mean_teacher_cifar10_eman": {**MT_004, "data.name": "cifar10", "data.labels_per_class": 400,
                                  "augment.flip": True, "teacher.norm": "eman",
                                  "mean_teacher.targets_from": "teacher"},
    "mean_teacher_svhn_eman": {**MT_004, "data.name": "svhn", "data.labels_per_class": 25, "augment.flip": False,
                               "teacher.norm": "eman", "mean_teacher.targets_from": "teacher"},
    "mean_teacher_digits": {**DIGITS_SEMI, "method": "mean_teacher", "teacher.momentum": 0.95,
                            "teacher.momentum_final": 0.99, "teacher.norm": "batch",
                            "mean_teacher.targets_from": "teacher", "mean_teacher.consistency_weight": 30.0},
    "pi_model_cifar10": {**CONVNET_SGD, **EVAL_TEACHER_004, "method": "mean_teacher", "data.name": "cifar10",
                         "mean_teacher.targets_from": "student", "mean_teacher.consistency_weight": 100.0},
    "pi_model_svhn": {**CONVNET_SGD, **EVAL_TEACHER_004, "method": "mean_teacher", "data.name": "svhn",
                      "mean_teacher.targets_from": "student", "mean_teacher.consistency_weight": 100.0},
    "pi_model_digits": {**DIGITS_SEMI, "method": "mean_teacher", "mean_teacher.targets_from": "student",
                        "mean_teacher.consistency_weight": 30.0},
    "moco_digits": {"method": "moco", "teacher.momentum": 0.95, "teacher.preserve_prob": 0.5, "moco.queue_size": 512,
                    "optim.lr": 0.06},
    "moco_eman_cifar10": {**MOCO_EMAN, "data.name": "cifar10", "model.name": "resnet18", "moco.queue_size": 4096},
    "moco_eman_imagenet": {**MOCO_EMAN, "data.name": "folder", "model.name": "resnet50", "moco.queue_size": 65536},
    "moco_sts_cifar10": {**MOCO_000, "teacher.preserve_prob": 0.5, "model.name": "resnet18", "moco.queue_size": 4096},
    "moco_sts_imagenet": {**MOCO_000, "teacher.preserve_prob": 0.5, "model.name": "resnet50",
                          "moco.queue_size": 65536},
    "moco_tma_cifar10": {**MOCO_000, "teacher.preserve_prob": 0.0, "model.name": "resnet18", "moco.queue_size": 4096},
    "moco_tma_imagenet": {**MOCO_000, "teacher.preserve_prob": 0.0, "model.name": "resnet50",
                          "moco.queue_size": 65536},
    "supervised_cifar10": {**CONVNET_SGD, **EVAL_TEACHER_004, "method": "supervised", "data.name": "cifar10",
                           "supervised.mu": 0},
    "supervised_svhn": {**CONVNET_SGD, **EVAL_TEACHER_004, "method": "supervised", "data.name": "svhn",
                        "supervised.mu": 0},
    "supervised_digits": {**DIGITS_SEMI, "method": "supervised", "supervised.mu": 0},
    # Fashion-MNIST (issue 10): tuned budgets; 004's noise (2 px, sigma 0.15), LA's alpha 0.6 and weights w_max / (1 + mu)
    "supervised_fashion": {**FASHION_SEMI, "method": "supervised", "data.labels_per_class": 10,
                           "teacher.preserve_prob": 0.0, "supervised.mu": 0},
    "mean_teacher_fashion": {**FASHION_SEMI, "method": "mean_teacher", "data.labels_per_class": 10,
                             "teacher.momentum_schedule": "two_phase", "teacher.norm": "batch",
                             "mean_teacher.targets_from": "teacher", "mean_teacher.consistency": "mse",
                             "mean_teacher.mu": 4},
    "pi_model_fashion": {**FASHION_SEMI, "method": "mean_teacher", "data.labels_per_class": 10,
                         "mean_teacher.targets_from": "student", "mean_teacher.consistency_weight": 100.0 / 5,
                         "mean_teacher.mu": 4},
    "temporal_ensembling_fashion": {**FASHION_SEMI, "method": "temporal_ensembling", "data.labels_per_class": 10,
                                    "data.unlabeled": "all", "temporal_ensembling.alpha": 0.6,
                                    "temporal_ensembling.consistency_weight": 30.0 / 5, "temporal_ensembling.mu": 4},
    "byol_fashion": {"method": "byol", "data.name": "fashion_mnist", "model.name": "fmnist_cnn",
                     "teacher.momentum": 0.9, "teacher.momentum_schedule": "cosine", "teacher.momentum_final": 1.0,
                     "teacher.preserve_prob": 0.7, "teacher.granularity": "layer", "optim.lr": 0.1,
                     "optim.weight_decay": 1e-4, "optim.batch_size": 256, "optim.schedule": "cosine",
                     "eval.at_start": True},
    "moco_fashion": {"method": "moco", "data.name": "fashion_mnist", "model.name": "fmnist_cnn",
                     "teacher.momentum": 0.99, "teacher.momentum_schedule": "constant", "teacher.preserve_prob": 0.5,
                     "teacher.granularity": "layer", "optim.weight_decay": 1e-4, "optim.batch_size": 256,
                     "optim.warmup_epochs": 0, "augment.crop_scale": [0.2, 1.0], "moco.temperature": 0.2,
                     "eval.at_start": True},
    "fixmatch_fashion": {**FIXMATCH, "data.name": "fashion_mnist", "model.name": "fmnist_cnn",
                         "data.labels_per_class": 4, "optim.weight_decay": 5e-4, "teacher.momentum": 0.99,
                         "teacher.preserve_prob": 0.0, "optim.batch_size": 16, "optim.epochs": 6,
                         "optim.steps_per_epoch": 100, "fixmatch.pseudo_labels_from": "student"},
}

# Keys whose value needs no source (names, paths, cadence of logging); every other value line carries one.
NO_SOURCE_NEEDED = {"method", "out", "progress", "data.name", "data.root", "data.download", "data.split_seed",
                    "data.test_split", "eval.every_epochs"}


def _get(cfg, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def test_every_recipe_and_variant_has_a_row():
    assert {p.stem for p in RECIPES} | set(VARIANTS) == set(TABLE)
    assert not {p.stem for p in RECIPES} & set(VARIANTS)


ROWS = sorted(TABLE)


@pytest.mark.parametrize("row", ROWS)
def test_recipe_values_match_their_sources(row):
    recipe, overrides = VARIANTS.get(row, (row, []))
    cfg = config.load(ROOT / f"src/stsmooth/recipes/{recipe}.yaml", overrides)
    wrong = {}
    for key, expected in TABLE[row].items():
        got = _get(cfg, key)
        same = got == pytest.approx(expected) if isinstance(expected, float) else got == expected
        if not same:
            wrong[key] = (got, expected)
    assert not wrong, f"{row}: (recipe, source) = {wrong}"


@pytest.mark.parametrize("row", sorted(VARIANTS))
def test_each_variant_is_documented_in_its_recipe_with_a_source(row):
    """The header shows the exact command, and the line under it gives the override's source."""
    recipe, overrides = VARIANTS[row]
    text = (ROOT / f"src/stsmooth/recipes/{recipe}.yaml").read_text()
    assert f"#   stsmooth train {recipe} {' '.join(overrides)}\n" in text
    assert (overrides, config.recipe_notes(recipe)["variants"][0][1]) in config.recipe_notes(recipe)["variants"]
    reason = dict((" ".join(o), r) for o, r in config.recipe_notes(recipe)["variants"])[" ".join(overrides)]
    assert any(source in reason for source in ("000", "003", "004")), reason
    # one key besides the run folder: a variant is a one-key override
    assert len([o for o in overrides if not o.startswith("out=")]) == 1


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_names_its_paper(recipe):
    assert config.recipe_notes(recipe)["paper"], f"{recipe.name} has no '# paper:' header line"


def _value_lines(text: str):
    """(dotted key, line) of every ``key: value`` line of a block-style YAML recipe."""
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        body = line.split("#", 1)[0].rstrip()
        if not body.strip():
            continue
        indent = len(body) - len(body.lstrip())
        key, _, value = body.strip().partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        if value.strip():
            yield dotted, line
        else:
            stack.append((indent, key))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_value_names_its_source(recipe):
    text = recipe.read_text()
    assert text.startswith("#"), f"{recipe.name} has no header"
    bare = [dotted for dotted, line in _value_lines(text) if dotted not in NO_SOURCE_NEEDED and "#" not in line]
    assert not bare, f"{recipe.name}: values without a source comment: {bare}"


def test_byol_eman_momentum_ramps_like_the_release():
    """BYOLEMAN.momentum_update: m = 1 - (1 - 0.98)(cos(pi k / K) + 1) / 2 at iteration k of K."""
    cfg = config.load(ROOT / "src/stsmooth/recipes/byol_eman_imagenet.yaml")
    m, _ = train.teacher_schedules(cfg.teacher, steps_per_epoch=10, total_steps=1000)
    assert [m(0), m(500), m(1000)] == pytest.approx([0.98, 0.99, 1.0])


def test_mean_teacher_recipes_use_the_releases_batch_norm_teacher():
    for name in ("mean_teacher_cifar10", "mean_teacher_svhn"):
        assert config.load(ROOT / f"src/stsmooth/recipes/{name}.yaml").teacher.norm == "batch"
