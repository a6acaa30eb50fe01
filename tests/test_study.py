"""benchmarks/study.py: the report reads run folders and never invents a number."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from stsmooth.training import sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("study", ROOT / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "study", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STUDY", tmp_path / "study")
    return module


def _table(study):
    return study.Table("toy", "toy table", "a claim", "byol_digits", ["optim.epochs=1"], [0, 1], "1 step",
                       variants=[["A", "teacher.preserve_prob=0"], ["B", "teacher.preserve_prob=0.5"]])


def test_matched_horizon_momentum(study):
    # issue 10 item 8: m' = 1 - (1 - p)(1 - m); p = 0.7, m = 0.9 -> 1 - 0.3 * 0.1 = 0.97
    rules = {r[0]: r[1:] for r in study._rules(0.9, 0.7, "cosine")}
    assert rules["TMA_matched"] == ["teacher.momentum=0.97", "teacher.preserve_prob=0",
                                    "teacher.momentum_schedule=cosine"]
    assert rules["none"][:2] == ["teacher.momentum=0", "teacher.preserve_prob=0"]


def test_report_placeholder_without_runs(study):
    text = study.section(_table(study))
    assert study.NOT_RUN in text
    assert "|" not in text  # no table, so no number


def test_report_mean_std_and_wall_time(study):
    table = _table(study)
    spec = sweep.make_spec(sweep_recipe_path(), {}, {v[0]: v[1:] for v in table.variants}, table.seeds,
                           table.overrides, ["seed"])
    sweep.save_spec(spec, table.out)
    knn = {("A", 0): 70.0, ("A", 1): 74.0}  # B has no finished run
    for run in sweep.plan(spec, table.out):
        key = (run.point["variant"], run.seed)
        if key in knn:
            run.folder.mkdir(parents=True)
            (run.folder / "results.json").write_text(json.dumps(
                {"teacher": {"knn_top1": knn[key]}, "seconds": 10.0 + 10 * run.seed}))
    text = study.section(table)
    # mean 72, sample std sqrt(((70-72)^2 + (74-72)^2) / 1) = 2.83
    assert "| A | 2 | 72.00 ± 2.83 |" in text
    assert "| B | 0 | — |" in text
    assert "Finished 2 of 4 runs; wall time 30 s" in text
    assert study.NOT_RUN not in text


def sweep_recipe_path() -> Path:
    return ROOT / "src" / "stsmooth" / "recipes" / "byol_digits.yaml"
