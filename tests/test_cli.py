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


def test_recipe_names_resolve_to_configs():
    assert resolve_recipe("moco_digits") == Path(__file__).resolve().parents[1] / "configs/moco_digits.yaml"
