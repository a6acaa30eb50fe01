"""What a cluster does to a run (issue 14 items 1-3): step checkpoints, kill -9, SIGTERM, requeue, locks,
mismatched resumes. Each test is a tiny digits run; README "Reliability" quotes them."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stsmooth.errors import StsmoothError
from stsmooth.training import checkpoint, config, train
from stsmooth.training.run_folder import RunFolder

CHILD = Path(__file__).with_name("reliability_child.py")
TINY = ["progress=false", "log=none", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.warmup_epochs=1", "eval.every_epochs=2",
        "eval.probe_size=32", "export=false"]
TIMING = ("epoch_seconds", "images_per_s")  # wall-clock columns of metrics.csv


def tiny(out, *extra):
    return config.load("byol_digits", TINY + [f"out={out}", *extra])


def _same_state(a_dir, b_dir):
    a, b = checkpoint.load(Path(a_dir) / "checkpoints/last.pt"), checkpoint.load(Path(b_dir) / "checkpoints/last.pt")
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["teacher"]["module"]:
        assert torch.equal(a["teacher"]["module"][key], b["teacher"]["module"][key]), key
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], b["optimizer"]["state"][key]["momentum_buffer"]), key


def _metric_rows(out):
    import csv

    with open(Path(out) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _results(out):
    res = json.loads((Path(out) / "results.json").read_text())
    res.pop("seconds")
    return res


# ---- item 1: checkpoints every N steps, mid-epoch resume, kill -9, SIGTERM --------------------------------

STEPPED = ["optim.steps_per_epoch=10", "optim.epochs=2", "checkpoint.every_steps=3"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one is compared with."""
    out = tmp_path_factory.mktemp("straight")
    train.run(tiny(out, *STEPPED))
    return out


def test_step_checkpoints_resume_mid_epoch_bit_identical(tmp_path, straight, monkeypatch):
    real_save = checkpoint.save

    def crash_at_step_13(state, path):  # inside epoch 2 (steps 11-20)
        real_save(state, path)
        if state["step"] == 12:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train.ckpt, "save", crash_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny(tmp_path, *STEPPED, "checkpoint.keep=3"))
    monkeypatch.setattr(train.ckpt, "save", real_save)
    state = checkpoint.load(tmp_path / "checkpoints/last.pt")
    assert (state["step"], state["epoch"]) == (12, 1)  # every 3 steps: 3, 6, 9, epoch end 10, 12
    # keep=3: last.pt (12) and the two before it (9 and the epoch end, 10)
    kept = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert kept == [9, 10]
    assert checkpoint.load(tmp_path / "checkpoints" / next(
        p.name for p in (tmp_path / "checkpoints").glob("step_*.pt") if p.stem.endswith("10")))["step"] == 10
    train.run(tiny(tmp_path, *STEPPED, "checkpoint.keep=3", "resume=true"))
    _same_state(straight, tmp_path)
    assert _metric_rows(tmp_path) == _metric_rows(straight)  # the epoch's mean loss spans the interruption
    assert _results(tmp_path) == _results(straight)


def _child(out, steps_file, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(train.__file__).resolve().parents[2])] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    return subprocess.Popen([sys.executable, str(CHILD), str(steps_file), *TINY, *STEPPED, f"out={out}", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps_done(steps_file) -> int:
    lines = Path(steps_file).read_text().split() if Path(steps_file).is_file() else []
    return int(lines[-1]) if lines else 0


def _wait_for_step(proc, steps_file, at_least, timeout=120.0):
    t0 = time.monotonic()
    while _steps_done(steps_file) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the child did not reach the step"
        time.sleep(0.005)


def test_kill_9_at_random_moments_loses_at_most_every_steps(tmp_path, straight):
    rng = random.Random(14)
    out, steps_file = tmp_path / "run", tmp_path / "steps.txt"
    targets = sorted(rng.sample(range(2, 19), 2))  # of the 20 steps; 10 per epoch
    for attempt, target in enumerate(targets):
        proc = _child(out, steps_file, *(["resume=true"] if attempt else []))
        _wait_for_step(proc, steps_file, target)
        time.sleep(rng.uniform(0.0, 0.02))  # a random moment: in a step, a save, the epoch's evaluation
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        done = _steps_done(steps_file)
        saved = checkpoint.load(out / "checkpoints/last.pt")["step"] if (out / "checkpoints/last.pt").exists() else 0
        assert 0 <= done - saved <= 3, (done, saved)  # checkpoint.every_steps=3
        with open(steps_file, "a") as f:  # the resumed run counts on from the checkpoint
            f.write(f"{saved}\n")
    train.run(tiny(out, *STEPPED, "resume=true"))
    _same_state(straight, out)
    assert _metric_rows(out) == _metric_rows(straight)
    assert _results(out) == _results(straight)
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_sigterm_mid_epoch_checkpoints_the_last_step_and_exits_75(tmp_path, straight):
    out, steps_file = tmp_path / "run", tmp_path / "steps.txt"
    proc = _child(out, steps_file)
    _wait_for_step(proc, steps_file, 13)  # inside epoch 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == train.PREEMPTED_EXIT == 75
    done = _steps_done(steps_file)
    state = checkpoint.load(out / "checkpoints/last.pt")
    assert state["step"] == done and 13 <= done < 20  # nothing lost: the checkpoint is the last finished step
    assert f"SIGTERM on a rank: checkpoint written at step {done}" in err and "Traceback" not in err
    assert not (out / "results.json").exists() and not (out / ".lock").exists()
    train.run(tiny(out, *STEPPED, "resume=true"))
    _same_state(straight, out)
    assert _results(out) == _results(straight)


def test_checkpoint_due_every_steps_every_minutes_and_on_a_signal():
    from types import SimpleNamespace

    cfg = SimpleNamespace(checkpoint=config.CheckpointConfig(every_steps=4, every_minutes=1.0))
    saver = train._Saver(SimpleNamespace(cfg=cfg), 0.0, 0.0, 0)
    assert saver.due(7, stop=False) == (False, False)
    assert saver.due(8, stop=False) == (True, False)  # every 4 steps
    saver.last_time -= 61.0  # a minute and a second since the last checkpoint
    assert saver.due(9, stop=False) == (True, False)
    saver.last_time += 61.0
    assert saver.due(9, stop=True) == (True, True)  # SIGTERM: save and stop
    with pytest.raises(ValueError, match=r"checkpoint.keep=0 must be >= 1"):
        config.load(overrides=["checkpoint.keep=0"])


@pytest.mark.slow
def test_sigterm_under_torchrun_two_ranks_resume_mid_epoch_bit_identical(tmp_path):
    """Both ranks stop at the same step, the checkpoint holds both ranks' random states."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(train.__file__).resolve().parents[2])] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    args = [*TINY, "optim.steps_per_epoch=12", "optim.epochs=1", "eval.every_epochs=1"]

    def launch(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(CHILD),
               str(tmp_path / f"{out}.steps"), *args, f"out={tmp_path / out}", *extra]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    straight = launch("straight")
    assert straight.wait(timeout=300) == 0, straight.communicate()[1][-3000:]
    proc = launch("run")
    _wait_for_step(proc, tmp_path / "run.steps", 4)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to both ranks
    _, err = proc.communicate(timeout=120)
    state = checkpoint.load(tmp_path / "run/checkpoints/last.pt")
    assert 4 <= state["step"] < 12 and state["epoch"] == 0, err[-3000:]
    assert state["step"] >= _steps_done(tmp_path / "run.steps") and len(state["rng_ranks"]) == 2
    assert "SIGTERM on a rank: checkpoint written at step" in err
    resumed = launch("run", "resume=true")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[1][-3000:]
    _same_state(tmp_path / "straight", tmp_path / "run")
    assert _results(tmp_path / "run") == _results(tmp_path / "straight")


# ---- item 2: requeue-safe --------------------------------------------------------------------------------


def _snapshot(out):
    return {p.relative_to(out): (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(out).rglob("*") if p.is_file()}


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    args = ("optim.steps_per_epoch=3", "optim.epochs=2", "eval.every_epochs=1")
    first = train.run(tiny(tmp_path, *args))
    assert first["smoothness"]["param_msd"] > 0
    before = _snapshot(tmp_path)
    again = train.run(tiny(tmp_path, *args, "resume=true"))
    assert again == first
    assert _snapshot(tmp_path) == before  # not a byte, not a modification time


def test_kill_before_results_json_finishes_with_the_runs_own_smoothness(tmp_path, monkeypatch):
    args = ("optim.steps_per_epoch=3", "optim.epochs=2", "eval.every_epochs=1")
    reference = train.run(tiny(tmp_path / "straight", *args))
    real_write = RunFolder.write_json

    def killed(self, name, data):
        raise KeyboardInterrupt("killed between the last checkpoint and results.json")

    monkeypatch.setattr(RunFolder, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny(tmp_path / "run", *args))
    monkeypatch.setattr(RunFolder, "write_json", real_write)
    assert checkpoint.load(tmp_path / "run/checkpoints/last.pt")["step"] == 6
    res = train.run(tiny(tmp_path / "run", *args, "resume=true"))
    reference.pop("seconds"), res.pop("seconds")
    assert res == reference and res["smoothness"]["param_msd"] > 0  # not re-measured against itself (0.0)
    assert _metric_rows(tmp_path / "run") == _metric_rows(tmp_path / "straight")


@pytest.mark.parametrize("where", ["evaluation", "log"])
def test_kill_in_the_last_epochs_evaluation_or_log_is_evaluated_and_logged_once_on_resume(tmp_path, monkeypatch,
                                                                                          where):
    from stsmooth.training.monitor import Monitor

    args = ("optim.steps_per_epoch=3", "optim.epochs=2", "eval.every_epochs=1")
    reference = train.run(tiny(tmp_path / "straight", *args))
    real_evaluate, real_log = Monitor.evaluate, RunFolder.log

    calls = []

    def evaluate(self, student, teacher):  # the kill comes while epoch 2 is evaluated (the second call)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in the evaluation")
        return real_evaluate(self, student, teacher)

    def log(self, row):  # the kill comes after epoch 2's row is appended, before its checkpoint
        real_log(self, row)
        if row["epoch"] == 2:
            raise KeyboardInterrupt("killed after the log")

    if where == "evaluation":
        monkeypatch.setattr(Monitor, "evaluate", evaluate)
    else:
        monkeypatch.setattr(RunFolder, "log", log)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny(tmp_path / "run", *args))
    monkeypatch.setattr(Monitor, "evaluate", real_evaluate)
    monkeypatch.setattr(RunFolder, "log", real_log)
    res = train.run(tiny(tmp_path / "run", *args, "resume=true"))
    reference.pop("seconds"), res.pop("seconds")
    assert res == reference
    assert _metric_rows(tmp_path / "run") == _metric_rows(tmp_path / "straight")  # epoch 2's row, once


def _lock(out, pid, host=None):
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "job": None}))


def test_a_folder_in_use_is_refused_in_one_line_before_anything_is_written(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path, holder.pid)
        with pytest.raises(StsmoothError, match=rf"^run folder .* is in use by pid {holder.pid} on host") as err:
            train.run(tiny(tmp_path, "optim.steps_per_epoch=3", "optim.epochs=1"))
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no config.yaml, no metrics.csv
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_warning_and_orphans_removed(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path, dead.pid)
    (tmp_path / "checkpoints").mkdir()
    orphan = tmp_path / "checkpoints" / ".last.pt.x1y2z3.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train.run(tiny(tmp_path, "optim.steps_per_epoch=3", "optim.epochs=1"))
    assert f"warning: taking over the stale lock of pid {dead.pid}" in capsys.readouterr().err
    assert not orphan.exists() and not (tmp_path / ".lock").exists()
    assert (tmp_path / "results.json").is_file()


def test_a_torn_last_line_of_metrics_csv_is_dropped_on_resume(tmp_path, monkeypatch):
    args = ("optim.steps_per_epoch=6", "optim.epochs=2", "eval.every_epochs=1")
    train.run(tiny(tmp_path / "straight", *args))
    real_save = checkpoint.save

    def crash_after_epoch_1(state, path):
        real_save(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.ckpt, "save", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny(tmp_path / "run", *args))
    monkeypatch.setattr(train.ckpt, "save", real_save)
    with open(tmp_path / "run/metrics.csv", "a") as f:
        f.write("2,1")  # a kill in the middle of appending epoch 2's row "2,12,...": its step reads 1
    train.run(tiny(tmp_path / "run", *args, "resume=true"))
    assert _metric_rows(tmp_path / "run") == _metric_rows(tmp_path / "straight")


# ---- item 3: resume checks what it resumes ---------------------------------------------------------------


@pytest.fixture
def one_epoch(tmp_path):
    out = tmp_path / "run"
    train.run(tiny(out, "optim.steps_per_epoch=3", "optim.epochs=1"))
    return out


@pytest.mark.parametrize("change, key, old, new", [
    ("optim.batch_size=16", "optim.batch_size", "32", "16"),
    ("method=moco", "method", "'byol'", "'moco'"),
    ("model.options.width=16", "model.options.width", "8", "16"),
    ("teacher.preserve_prob=0.5", "teacher.preserve_prob", "0.7", "0.5"),
    ("data.name=mnist", "data.name", "'digits'", "'mnist'"),
])
def test_a_resume_that_breaks_the_run_is_refused_naming_key_and_values(one_epoch, change, key, old, new):
    before = _snapshot(one_epoch)
    with pytest.raises(ValueError) as err:
        train.run(tiny(one_epoch, "optim.steps_per_epoch=3", "optim.epochs=2", "resume=true", change))
    message = str(err.value)
    assert message.startswith(f"resume refused: {key} is {old} in ") and f"but {new} now" in message
    assert "\n" not in message
    assert _snapshot(one_epoch) == before  # config.yaml included


def test_a_resume_with_other_steps_per_epoch_is_refused(one_epoch):
    before = _snapshot(one_epoch)
    with pytest.raises(ValueError, match=r"resume refused: (optim.steps_per_epoch is 3 .* but 4 now|steps per "
                                         r"epoch is 3 .* but 4 now)"):
        train.run(tiny(one_epoch, "optim.steps_per_epoch=4", "optim.epochs=2", "resume=true"))
    assert _snapshot(one_epoch) == before


def test_allowed_changes_are_listed_and_recorded(one_epoch, capsys):
    capsys.readouterr()
    res = train.run(tiny(one_epoch, "optim.steps_per_epoch=3", "optim.epochs=2", "eval.every_epochs=1",
                         "resume=true"))
    assert res["steps"] == 6 and checkpoint.load(one_epoch / "checkpoints/last.pt")["step"] == 6
    line = "resumed at step 3 with changes: eval.every_epochs 2 -> 1, optim.epochs 1 -> 2"
    assert f"stsmooth: {line}\n" in capsys.readouterr().err
    recorded = (one_epoch / "resumes.txt").read_text().splitlines()
    assert len(recorded) == 1 and recorded[0].endswith(line)
    assert config.load(one_epoch / "config.yaml").optim.epochs == 2


def test_resume_without_a_checkpoint_says_so_and_starts_fresh(tmp_path, capsys):
    res = train.run(tiny(tmp_path, "optim.steps_per_epoch=3", "optim.epochs=1", "resume=true"))
    assert f"resume=true but there is no checkpoint at {tmp_path / 'checkpoints/last.pt'}; starting afresh" \
        in capsys.readouterr().err
    assert res["steps"] == 3
