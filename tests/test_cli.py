"""The stsmooth command: train, export, eval, and its one-line errors."""

import json
from pathlib import Path

import pytest

from stsmooth.cli import main, resolve_recipe
from stsmooth.models.export import load_safetensors

TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.epochs=1",
        "optim.warmup_epochs=0", "eval.probe_size=32"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "byol_digits", *TINY, f"out={out}"]) == 0
    return out


def test_train_writes_the_run_folder(run_dir, capsys):
    for name in ("results.json", "config.yaml", "checkpoints/last.pt", "metrics.csv", "teacher.safetensors"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["teacher"]) == {"knn_top1", "knn_top5"} and results["epochs"] == 1
    assert results["seconds"] > 0


def test_export_roundtrip(run_dir, tmp_path, capsys):
    out = tmp_path / "teacher.safetensors"
    assert main(["export", str(run_dir / "checkpoints/last.pt"), str(out)]) == 0
    exported = load_safetensors(out)
    at_end = load_safetensors(run_dir / "teacher.safetensors")
    assert exported.keys() == at_end.keys() and "conv1.weight" in exported
    assert all((exported[k] == at_end[k]).all() for k in exported)
    assert "teacher backbone written" in capsys.readouterr().out


def test_eval_knn_prints_a_table_and_writes_json(run_dir, tmp_path, capsys):
    out = tmp_path / "knn.json"
    assert main(["eval", "knn", str(run_dir / "checkpoints/last.pt"), "k=10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top1" in printed
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["top1"] <= 100


@pytest.mark.parametrize("argv, message", [
    (["train", "byol_digits", "teacher.momentm=0.9"], "did you mean 'teacher.momentum'"),
    (["train", "no_such_recipe"], "recipe 'no_such_recipe' not found"),
    (["eval", "knn", "missing.pt"], "no checkpoint"),
    (["eval", "knearest", "missing.pt"], "not one of knn"),
])
def test_bad_input_is_one_line_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_recipe_names_resolve_to_the_packaged_recipes():
    assert resolve_recipe("moco_digits") == Path(__file__).resolve().parents[1] / "src/stsmooth/recipes/moco_digits.yaml"


def test_an_unknown_recipe_lists_the_nearest_names(capsys):
    assert main(["train", "byol_digts"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did you mean byol_digits, moco_digits" in err


def test_version(capsys):
    import stsmooth

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"stsmooth {stsmooth.__version__}"


def test_recipes_lists_one_line_per_recipe_and_the_documented_variants(capsys):
    from stsmooth.training import config

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:-1] if not line.startswith(" ")}
    assert sorted(rows) == config.recipe_names()
    # name, method, data, model, then the teacher rule and the paper
    assert rows["byol_sts_cifar10"][:5] == ["byol_sts_cifar10", "byol", "cifar10", "resnet18", "STS"]
    assert rows["fixmatch_eman_imagenet"][:5] == ["fixmatch_eman_imagenet", "fixmatch", "folder", "resnet50", "TMA"]
    assert " ".join(rows["byol_sts_cifar10"]).endswith("000 §4.1, Tables 2-3 (STS), CIFAR-10 adaptation")
    under = lines[[i for i, line in enumerate(lines) if line.startswith("byol_sts_cifar10 ")][0] + 1]
    assert under.startswith("    + teacher.preserve_prob=0 out=runs/byol_tma_cifar10: BYOL + TMA")


def test_eval_out_under_a_file_is_one_line_with_status_2(run_dir, tmp_path, capsys):
    # issue 14 item 6: today write_text raised a NotADirectoryError traceback after the evaluation ran
    (tmp_path / "afile").write_text("x")
    assert main(["eval", "knn", str(run_dir / "checkpoints/last.pt"), "k=10",
                 "--out", str(tmp_path / "afile" / "knn.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write" in err and "afile" in err and "\n" not in err
