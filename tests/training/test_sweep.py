"""stsmooth sweep: the grid, one run folder per point and seed, skip / resume, the table, the plots, bad input."""

import csv
import json
import statistics
from pathlib import Path

import pytest

from stsmooth.cli import main
from stsmooth.training import checkpoint, sweep, train

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "src/stsmooth/recipes/byol_digits.yaml"
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.epochs=2",
        "optim.warmup_epochs=0", "eval.every_epochs=1", "eval.probe_size=32", "export=false",
        "teacher.momentum_schedule=constant"]


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("stsmooth: error: ")
    return err[len("stsmooth: error: "):]


def test_bad_input_one_line(tmp_path, capsys):
    base = ["sweep", "byol_digits", "--out", str(tmp_path / "s"), "--dry-run"]
    assert _error(base + ["--grid", "teacher.preserv=0,0.5", "--seeds", "0"], capsys) == \
        "--grid key 'teacher.preserv' is not a config key; did you mean 'teacher.preserve_prob'?"
    assert _error(base + ["--grid", "teacher.momentum=0,fast", "--seeds", "0"], capsys) == \
        "--grid teacher.momentum=fast: wrong type, teacher.momentum takes float"
    assert _error(base + ["--grid", "optim.epochs=1,2.5", "--seeds", "0"], capsys) == \
        "--grid optim.epochs=2.5: wrong type, optim.epochs takes int"
    assert _error(base + ["--grid", "data.labels_per_class=4,x", "--seeds", "0"], capsys) == \
        "--grid data.labels_per_class=x: wrong type, data.labels_per_class takes int or null"
    assert "sweep needs a grid" in _error(base + ["--seeds", "0"], capsys)
    assert _error(base + ["--grid", "teacher.momentum=", "--seeds", "0"], capsys).startswith(
        "--grid 'teacher.momentum=': empty value list for teacher.momentum")
    assert _error(base + ["--grid", "teacher.momentum=0,0.9"], capsys) == "sweep needs seeds: --seeds 0 [1 2 ...]"
    assert _error(base + ["--grid", "teacher.momentum=0,0.9", "--seeds"], capsys) == \
        "sweep needs seeds: --seeds 0 [1 2 ...]"
    assert "seeds must be distinct" in _error(base + ["--grid", "teacher.momentum=0", "--seeds", "1", "1"], capsys)
    assert "is listed twice" in _error(base + ["--grid", "teacher.momentum=0,0", "--seeds", "1"], capsys)
    assert "must lie in [0, 1]" in _error(base + ["--grid", "teacher.momentum=0,2", "--seeds", "0"], capsys)
    assert "seed= is set by the sweep" in _error(base + ["--grid", "teacher.momentum=0", "--seeds", "0", "seed=4"],
                                                 capsys)
    assert "both a sweep axis and a fixed override" in _error(
        base + ["--grid", "teacher.momentum=0", "--seeds", "0", "teacher.momentum=0.5"], capsys)
    assert not (tmp_path / "s").exists()


def test_submitit_parameters_are_read_as_config_values(tmp_path, capsys):
    # --submitit KEY=VALUE goes through the config's key=value parser: numbers and strings typed
    assert sweep._parameters(["timeout_min=120", "slurm_partition=gpu", "mem_gb=1.5"]) == \
        {"timeout_min": 120, "slurm_partition": "gpu", "mem_gb": 1.5}
    assert _error(["sweep", "byol_digits", "--out", str(tmp_path / "s"), "--grid", "teacher.momentum=0",
                   "--seeds", "0", "--launcher", "submitit", "--submitit", "timeout_min"], capsys) == \
        "--submitit 'timeout_min' is not of the form KEY=VALUE (e.g. timeout_min=120)"


def test_dry_run_prints_the_commands(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sweep", "byol_digits", "--grid", "teacher.preserve_prob=0,0.5,0.7", "--grid", "teacher.momentum=0,0.99",
            "--seeds", "0", "1", "optim.epochs=3", "--out", str(out), "--dry-run"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 2 * 2
    name = "teacher.preserve_prob=0.5,teacher.momentum=0.99,seed=1"
    assert lines[7] == (f"stsmooth train {RECIPE} optim.epochs=3 teacher.preserve_prob=0.5 teacher.momentum=0.99 "
                        f"seed=1 out={out / 'runs' / name} resume=true")
    assert not out.exists()  # a dry run writes nothing


def test_variants_and_seed_keys(tmp_path, capsys):
    argv = ["sweep", "supervised_digits", "--variant", "TMA", "teacher.preserve_prob=0",
            "--variant", "STS", "teacher.preserve_prob=0.5", "--variant", "MT", "recipe=mean_teacher_digits",
            "--grid", "data.labels_per_class=3,5", "--seeds", "0", "2", "--seed-keys", "seed", "data.split_seed",
            "--out", str(tmp_path), "--dry-run"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 2 * 2
    assert lines[5].startswith(f"stsmooth train {ROOT / 'src/stsmooth/recipes/supervised_digits.yaml'} teacher.preserve_prob=0.5 "
                               "data.labels_per_class=3 seed=2 data.split_seed=2 out=")
    assert lines[5].endswith("runs/variant=STS,data.labels_per_class=3,seed=2 resume=true")
    assert lines[8].startswith(f"stsmooth train {ROOT / 'src/stsmooth/recipes/mean_teacher_digits.yaml'} data.labels_per_class=3")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_runs_skips_finished_and_resumes_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["sweep", "byol_digits", "--grid", "teacher.preserve_prob=0,0.7", "--seeds", "0", "1", *TINY,
            "--out", str(out)]
    interrupted = "teacher.preserve_prob=0.7,seed=0"
    real_save, real_run = checkpoint.save, train.run

    def crash(state, path):  # the third run dies after its first epoch
        real_save(state, path)
        if interrupted in str(path) and state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train.ckpt, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    monkeypatch.setattr(train.ckpt, "save", real_save)
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"teacher.preserve_prob": ["0", "0.7"]}
    assert not (out / "sweep.csv").exists()

    started = []

    def spy(cfg):
        started.append((Path(cfg.out).name, cfg.resume, (Path(cfg.out) / "checkpoints/last.pt").is_file()))
        return real_run(cfg)

    monkeypatch.setattr(train, "run", spy)
    assert main(argv) == 0
    # finished runs are skipped; the interrupted one resumes from its checkpoint; the last one starts
    assert started == [(interrupted, True, True), ("teacher.preserve_prob=0.7,seed=1", True, False)]
    rows = (out / "runs" / interrupted / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # epoch 1 kept, epoch 2 added by the resumed run

    table = _rows(out / "sweep.csv")
    assert [(r["teacher.preserve_prob"], r["seed"]) for r in table] == [("0", "0"), ("0", "1"), ("0.7", "0"),
                                                                        ("0.7", "1")]
    for r in table:
        res = json.loads((out / "runs" / f"teacher.preserve_prob={r['teacher.preserve_prob']},seed={r['seed']}"
                          / "results.json").read_text())
        assert float(r["teacher.knn_top1"]) == res["teacher"]["knn_top1"]
        assert float(r["smoothness.param_msd"]) == res["smoothness"]["param_msd"]
        assert float(r["seconds"]) == res["seconds"] and r["steps"] == "6"
    summary = (out / "summary.md").read_text()
    values = [float(r["teacher.knn_top1"]) for r in table[2:]]
    expected = f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    line = next(x for x in summary.splitlines() if x.startswith("| 0.7 | 2 |"))
    assert line.split(" | ")[2] == expected
    assert (out / "line.png").stat().st_size > 1000 and not (out / "heatmap.png").exists()

    started.clear()
    assert main(argv) == 0 and started == []  # everything done: nothing runs, the table is rewritten

    # Another grid into the same folder is refused, naming the difference; more seeds are fine.
    other = ["sweep", "byol_digits", "--grid", "teacher.preserve_prob=0,0.5", "--seeds", "0", *TINY, "--out", str(out)]
    with pytest.raises(ValueError, match=r"^sweep folder .* different sweep \(teacher.preserve_prob values 0,0.7 "
                                         r"there, 0,0.5 here\)"):
        sweep.main(RECIPE, other[2:])
    lr = ["--grid", "teacher.preserve_prob=0,0.7", "--seeds", "0", *TINY, "optim.lr=0.2", "--out", str(out)]
    with pytest.raises(ValueError, match=r"override no optim.lr there, optim.lr=0.2 here"):
        sweep.main(RECIPE, lr)
    assert sweep.main(RECIPE, ["--grid", "teacher.preserve_prob=0,0.7", "--seeds", "2", *TINY, "--out", str(out),
                               "--dry-run"]) == 0
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [0, 1]  # a dry run stores nothing


def _spec(grid, variants=None):
    return sweep.Spec("r.yaml", "0" * 64, grid, variants or {}, [], ["seed"], [0, 1, 2])


def test_summary_by_hand():
    spec = _spec({"teacher.momentum": ["0", "0.9"]})
    rows = [{"teacher.momentum": "0", "seed": s, "teacher.knn_top1": v, "smoothness.param_msd": d, "seconds": 10.0}
            for s, v, d in ((0, 80.0, 1e-4), (1, 82.0, 2e-4), (2, 84.0, 3e-4))]
    rows.append({"teacher.momentum": "0.9", "seed": 0, "teacher.knn_top1": 90.0, "smoothness.param_msd": 5e-5,
                 "seconds": 12.0})
    text = sweep.summary_markdown(spec, rows, "stsmooth sweep ...", ["teacher.momentum=0.9,seed=1"])
    assert "| teacher.momentum | n | teacher.knn_top1 | smoothness.param_msd | seconds |" in text
    assert "| 0 | 3 | 82.00 ± 2.00 | 0.0002 ± 0.0001 | 10.00 ± 0.00 |" in text  # stdev of 80, 82, 84 is 2
    assert "| 0.9 | 1 | 90.00 | 5e-05 | 12.00 |" in text
    assert "Not finished (1): `teacher.momentum=0.9,seed=1`" in text


def test_heatmap_for_two_axes(tmp_path):
    spec = _spec({"teacher.preserve_prob": ["0", "0.5"], "teacher.momentum": ["0", "0.9", "0.99"]})
    rows = [{"teacher.preserve_prob": p, "teacher.momentum": m, "seed": 0, "teacher.knn_top1": 70 + 10 * float(p)
             + float(m)} for p in ("0", "0.5") for m in ("0", "0.9", "0.99")]
    assert sweep.plot(spec, rows, "teacher.knn_top1", tmp_path) == tmp_path / "heatmap.png"
    three = _spec({"a": ["1"], "b": ["2"], "c": ["3"]})
    assert sweep.plot(three, [{"a": "1", "b": "2", "c": "3", "m": 1.0}], "m", tmp_path) is None


def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    argv = ["sweep", "byol_digits", "--grid", "teacher.preserve_prob=0,0.7", "--seeds", "0", *TINY,
            "optim.epochs=1", "--launcher", "submitit", "--cluster", "local", "--submitit", "timeout_min=10",
            "--out", str(out)]
    argv.remove("optim.epochs=2")
    assert main(argv) == 0
    table = _rows(out / "sweep.csv")
    assert [r["teacher.preserve_prob"] for r in table] == ["0", "0.7"] and all(r["epochs"] == "1" for r in table)
    assert list((out / "submitit").glob("*_result.pkl"))  # the runs went through submitit's jobs
