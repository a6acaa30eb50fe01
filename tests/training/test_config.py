"""Config: recipes, overrides, typed errors with the nearest valid key, saving."""

from pathlib import Path

import pytest

from stsmooth.methods import METHODS
from stsmooth.training import config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "src/stsmooth/recipes").glob("*.yaml"))


def test_defaults_are_the_papers():
    cfg = config.load()
    assert cfg.teacher.preserve_prob == 0.7  # 000 §4.1 BYOL
    assert cfg.optim.lr == 0.1 and cfg.optim.batch_size == 256 and cfg.optim.warmup_epochs == 10
    assert cfg.eval.knn_k == 20 and cfg.eval.knn_t == 0.07
    assert cfg.moco.queue_size == 65536 and cfg.moco.temperature == 0.2
    assert cfg.byol.projector_hidden == 4096 and cfg.byol.projector_out == 256


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads(recipe):
    cfg = config.load(recipe)
    assert cfg.method in METHODS


def test_paper_recipes():
    sts = config.load(ROOT / "src/stsmooth/recipes/byol_sts_imagenet.yaml")
    assert (sts.teacher.preserve_prob, sts.teacher.momentum, sts.teacher.momentum_schedule) == (0.7, 0.99, "cosine")
    tma = config.load("moco_sts_imagenet", ["teacher.preserve_prob=0"])  # the TMA variant of its header
    assert (tma.teacher.preserve_prob, tma.teacher.momentum, tma.optim.lr) == (0.0, 0.999, 0.03)
    eman = config.load(ROOT / "src/stsmooth/recipes/byol_eman_imagenet.yaml")
    assert (eman.teacher.norm, eman.teacher.momentum, eman.optim.name) == ("eman", 0.98, "lars")
    moco_eman = config.load(ROOT / "src/stsmooth/recipes/moco_eman_imagenet.yaml")
    assert moco_eman.norm_baseline == "none" and moco_eman.teacher.norm == "eman"
    cifar = config.load(ROOT / "src/stsmooth/recipes/byol_sts_cifar10.yaml")
    assert cifar.model.name == "resnet18" and cifar.model.options["stem"] == "cifar"


def test_a_recipe_is_a_packaged_name_or_a_path(tmp_path, monkeypatch):
    packaged = ROOT / "src/stsmooth/recipes/byol_digits.yaml"
    assert config.recipe_path("byol_digits") == packaged == config.recipe_path("byol_digits.yaml")
    assert config.recipe_names() == [p.stem for p in RECIPES] and len(RECIPES) >= 20
    assert config.load("moco_digits").method == "moco"
    own = tmp_path / "mine.yaml"
    own.write_text("method: moco\nteacher:\n  momentum: 0.5\n")
    assert config.load(own).teacher.momentum == 0.5 and config.load(str(own)).method == "moco"
    monkeypatch.chdir(tmp_path)  # a file of that name in the working folder wins over the packaged recipe
    (tmp_path / "byol_digits.yaml").write_text("method: moco\n")
    assert config.load("byol_digits.yaml").method == "moco" and config.load("byol_digits").method == "byol"


@pytest.mark.parametrize("wrong, nearest", [("byol_digts", "byol_digits"), ("moco_sts_cifar", "moco_sts_cifar10"),
                                            ("recipes/fixmatch_cifar10.yml", "fixmatch_cifar10")])
def test_an_unknown_recipe_names_the_nearest(wrong, nearest):
    with pytest.raises(FileNotFoundError) as err:
        config.load(wrong)
    message = str(err.value)
    assert message.startswith(f"recipe {wrong!r} not found") and "\n" not in message
    assert message.split("did you mean ", 1)[1].split(",")[0].split("?")[0] == nearest


def test_an_unknown_recipe_without_near_names_says_where_to_look():
    with pytest.raises(FileNotFoundError, match=r"^recipe 'zzzz' not found: .* \(stsmooth recipes lists them\)$"):
        config.load("zzzz")


@pytest.mark.parametrize("teacher, rule", [
    ({"momentum": 0.0, "preserve_prob": 0.0}, "none (m 0, BN eman)"),
    ({"momentum": 0.999, "preserve_prob": 0.0}, "TMA (m 0.999, BN eman)"),
    ({"momentum": 0.0, "preserve_prob": 0.7, "granularity": "channel"}, "SE (m 0, p 0.7 channel, BN eman)"),
    ({"momentum": 0.99, "momentum_schedule": "cosine", "preserve_prob": 0.7, "norm": "batch"},
     "STS (m 0.99->1 cosine, p 0.7 layer, BN batch)"),
    # m = 0 ramped up by a schedule still moves the teacher: TMA, not "none"
    ({"momentum": 0.0, "momentum_schedule": "cosine", "preserve_prob": 0.0}, "TMA (m 0->1 cosine, BN eman)"),
])
def test_teacher_rule_names_eq3s_cases(teacher, rule):
    assert config.teacher_rule(config.TeacherConfig(**teacher)) == rule


def test_recipe_notes_read_the_paper_line_and_the_variants():
    notes = config.recipe_notes("byol_sts_cifar10")
    assert notes["paper"] == "000 §4.1, Tables 2-3 (STS), CIFAR-10 adaptation"
    (overrides, reason), = notes["variants"]
    assert overrides == ["teacher.preserve_prob=0", "out=runs/byol_tma_cifar10"]
    assert reason.startswith("BYOL + TMA") and "000 Eq. 3 with p = 0" in reason
    assert config.recipe_notes("byol_digits")["variants"] == []


def test_overrides_win_and_are_typed():
    cfg = config.load(ROOT / "src/stsmooth/recipes/byol_digits.yaml", ["teacher.momentum=0", "teacher.preserve_prob=0",
                                                                       "optim.epochs=3", "model.options.width=8"])
    assert cfg.teacher.momentum == 0.0 and isinstance(cfg.teacher.momentum, float)
    assert cfg.optim.epochs == 3 and cfg.model.options == {"width": 8}


@pytest.mark.parametrize("override, expected", [
    ("teacher.momentm=0.9", "did you mean 'teacher.momentum'"),
    ("optimizer.lr=0.1", "did you mean 'optim.lr'"),
    ("teacher.preserve=0.5", "did you mean 'teacher.preserve_prob'"),
    ("byol.projector_hiden=8", "did you mean 'byol.projector_hidden'"),
])
def test_unknown_key_suggests_nearest(override, expected):
    with pytest.raises(ValueError, match=expected) as info:
        config.load(overrides=[override])
    assert "\n" not in str(info.value)


def test_unknown_key_in_recipe_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: byol\nteacher:\n  granularty: layer\n")
    with pytest.raises(ValueError, match=r"teacher.granularty.*bad.yaml.*teacher.granularity"):
        config.load(path)


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=abc", "optim.lr"),
    ("optim.epochs=1.5", "optim.epochs"),
    ("teacher.norm=emn", "did you mean 'eman'"),
    ("method=byl", "did you mean 'byol'"),
    ("teacher.preserve_prob=1.5", r"\[0, 1\]"),
    ("optim.name=adam", "sgd, lars"),
    ("norm_baseline=shufflebn", "teacher.norm=batch"),
])
def test_bad_values_are_one_line_errors(override, expected):
    with pytest.raises(ValueError, match=expected) as info:
        config.load(overrides=[override])
    assert "\n" not in str(info.value)


def test_malformed_override_and_missing_recipe():
    with pytest.raises(ValueError, match="key=value"):
        config.load(overrides=["teacher.momentum"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config.load("nope.yaml")


def test_roundtrip_through_yaml_and_dict(tmp_path):
    cfg = config.load(ROOT / "src/stsmooth/recipes/moco_digits.yaml", ["seed=3"])
    config.save(cfg, tmp_path / "config.yaml")
    again = config.load(tmp_path / "config.yaml")
    assert again == cfg
    assert config.from_dict(config.to_dict(cfg)) == cfg


def test_method_sections_come_from_method_files():
    keys = config.valid_keys()
    assert "byol.projector_hidden" in keys and "moco.queue_size" in keys
    assert config.method_config(config.load(overrides=["method=moco"])).temperature == 0.2
    # one section per method of the table, holding that method's own Config
    for name, method in METHODS.items():
        assert isinstance(getattr(config.RunConfig(), name), method.Config), name
