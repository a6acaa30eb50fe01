"""TeacherCallback: the plain Teacher API driven by Lightning's training loop.

Each test re-derives the teacher with the plain API (``Teacher.update`` on snapshots of the
student taken after the steps that should count) and compares bit for bit.
"""

import copy
import csv
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")
import lightning.pytorch as L  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from lightning_net import Net, loader, student_net, trainer  # noqa: E402

from stsmooth.core import schedules  # noqa: E402
from stsmooth.core.teacher import Teacher  # noqa: E402
from stsmooth.integrations.lightning import TeacherCallback  # noqa: E402


class Snapshots(L.Callback):
    """The student after every batch (runs after TeacherCallback: callbacks run in list order)."""

    def __init__(self):
        self.students = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.students.append(copy.deepcopy(pl_module.student))


def replay(snapshots, steps, momentum, preserve_prob, **options):
    """The plain loop: Teacher(initial student), then update from ``snapshots[i]`` with m(k), p(k)."""
    teacher = Teacher(student_net(), momentum=momentum(0), preserve_prob=preserve_prob(0), **options)
    for i, k in steps:
        teacher.update(snapshots[i], momentum=momentum(k), preserve_prob=preserve_prob(k))
    return teacher


def assert_same_teacher(a: Teacher, b: Teacher):
    assert a.step == b.step and a.seed == b.seed
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


MOMENTUM = schedules.cosine(0.5, total_steps=6)
PRESERVE = schedules.linear(0.3, 0.7, total_steps=6)


def test_once_per_step_with_gradient_accumulation():
    callback = TeacherCallback("student", momentum=MOMENTUM, preserve_prob=PRESERVE, granularity="channel",
                               norm="eman", seed=3)
    snaps = Snapshots()
    model = Net()
    trainer(callbacks=[callback, snaps], accumulate_grad_batches=2).fit(model, loader(8))
    assert model.teacher is callback.teacher
    assert callback.teacher.step == 4  # 8 batches / 2
    # the optimiser steps after batches 1, 3, 5, 7: they are steps k = 0, 1, 2, 3
    expected = replay(snaps.students, [(1, 0), (3, 1), (5, 2), (7, 3)], MOMENTUM, PRESERVE,
                      granularity="channel", norm="eman", seed=3)
    assert_same_teacher(callback.teacher, expected)


def test_skipped_steps_do_not_update():
    # batch 2: NaN gradients, the module's optimizer_step skips optimizer.step();
    # batch 4: training_step returns None (Lightning still calls optimizer.step, with no gradient)
    callback = TeacherCallback("student", momentum=MOMENTUM, preserve_prob=PRESERVE, granularity="layer", seed=5)
    snaps = Snapshots()
    model = Net(nan_batches=[2], none_batches=[4], skip_nonfinite=True)
    with pytest.warns(UserWarning, match="returned `None`"):
        t = trainer(callbacks=[callback, snaps])
        t.fit(model, loader(6))
    assert t.global_step == 6  # Lightning counts the skipped steps; the schedules follow its clock
    assert callback.teacher.step == 4
    expected = replay(snaps.students, [(0, 0), (1, 1), (3, 3), (5, 5)], MOMENTUM, PRESERVE,
                      granularity="layer", norm="eman", seed=5)
    assert_same_teacher(callback.teacher, expected)


def test_steps_the_amp_scaler_skips_do_not_update():
    # fp16 autocast on CPU with a grad scaler: batch 2's NaN gradients make the scaler skip optimizer.step()
    from lightning.pytorch.plugins import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    callback = TeacherCallback("student", momentum=MOMENTUM, preserve_prob=PRESERVE, seed=7)
    snaps = Snapshots()
    t = trainer(callbacks=[callback, snaps], plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    t.fit(Net(nan_batches=[2]), loader(5))
    assert t.global_step == 5 and scaler.get_scale() == 0.5  # one skip halved the scale
    assert callback.teacher.step == 4
    expected = replay(snaps.students, [(0, 0), (1, 1), (3, 3), (4, 4)], MOMENTUM, PRESERVE, seed=7)
    assert_same_teacher(callback.teacher, expected)


def test_skipped_step_would_be_seen_by_global_step():
    # the reason for the optimiser hook: global_step moves on the skipped batch 2 as well
    steps = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps.append(trainer.global_step)

    model = Net(nan_batches=[2], skip_nonfinite=True)
    trainer(callbacks=[TeacherCallback("student", seed=0), Record()]).fit(model, loader(4))
    assert steps == [1, 2, 3, 4]
    assert model.teacher.step == 3


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    def fit(ckpt_path=None, save=False):
        callback = TeacherCallback("student", momentum=schedules.cosine(0.6, total_steps=8), preserve_prob=0.5,
                                   granularity="neuron", norm="eman", seed=None)
        callbacks = [callback]
        if save:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1))
        model = Net()
        trainer(max_epochs=2, callbacks=callbacks, enable_checkpointing=save).fit(model, loader(4),
                                                                                 ckpt_path=ckpt_path)
        return model, callback

    full, full_cb = fit(save=True)
    state = torch.load(tmp_path / "epoch=0.ckpt", weights_only=True)
    saved = next(v for k, v in state["callbacks"].items() if k.startswith("TeacherCallback"))
    assert saved["teacher"]["step"] == 4 and saved["teacher"]["seed"] == full_cb.teacher.seed
    resumed, resumed_cb = fit(ckpt_path=tmp_path / "epoch=0.ckpt")
    assert full_cb.teacher.step == 8
    # seed=None: only the checkpoint can have given the resumed fit the same draws
    assert_same_teacher(resumed_cb.teacher, full_cb.teacher)
    for a, b in zip(full.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)


def test_logs_momentum_and_preserve_prob(tmp_path):
    callback = TeacherCallback("student", momentum=MOMENTUM, preserve_prob=PRESERVE, seed=0)
    logger = CSVLogger(tmp_path, name="run", version=0)
    trainer(callbacks=[callback], logger=logger, log_every_n_steps=1).fit(Net(), loader(5))
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("teacher/momentum")]
    assert [float(r["teacher/momentum"]) for r in rows] == pytest.approx([MOMENTUM(k) for k in range(5)], abs=1e-7)
    assert [float(r["teacher/preserve_prob"]) for r in rows] == pytest.approx([0.3, 0.3 + 0.4 / 6, 0.3 + 0.8 / 6,
                                                                               0.5, 0.3 + 1.6 / 6], abs=1e-7)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]


def test_teacher_is_not_a_submodule():
    model = Net()
    trainer(callbacks=[TeacherCallback("student", seed=0)]).fit(model, loader(2))
    assert isinstance(model.teacher, Teacher)
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert model.teacher.step == 2


def test_second_fit_continues_the_teacher_a_new_student_gets_a_new_one():
    callback = TeacherCallback("student", seed=0)
    model = Net()
    trainer(callbacks=[callback]).fit(model, loader(2))
    first = callback.teacher
    trainer(callbacks=[callback]).fit(model, loader(3))
    assert callback.teacher is first and first.step == 5
    other = Net()
    trainer(callbacks=[callback]).fit(other, loader(1))
    assert callback.teacher is not first and callback.teacher.step == 1 and other.teacher is callback.teacher


def test_bad_attribute_names_it():
    class NoStudent(Net):
        def __init__(self):
            super().__init__()
            self.net = self.student
            del self.student

    with pytest.raises(ValueError, match=r"attribute='student'.*NoStudent has no attribute 'student'.*net"):
        trainer(callbacks=[TeacherCallback("student")]).fit(NoStudent(), loader(2))
    with pytest.raises(ValueError, match=r"attribute='lr'.*Net\.lr is a float, not an nn\.Module"):
        trainer(callbacks=[TeacherCallback("lr")]).fit(Net(), loader(2))
    with pytest.raises(ValueError, match="momentum=1.5"):
        TeacherCallback("student", momentum=1.5)
    with pytest.raises(ValueError, match="attribute='my student'"):
        TeacherCallback("my student")


def test_name_clash_with_a_submodule():
    class HasTeacher(Net):
        def __init__(self):
            super().__init__()
            self.teacher = nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"name='teacher'.*registered submodule"):
        trainer(callbacks=[TeacherCallback("student")]).fit(HasTeacher(), loader(2))


def test_missing_extra_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "stsmooth.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'stsmooth\[lightning\]'"):
        importlib.import_module("stsmooth.integrations.lightning")


@pytest.mark.slow
def test_ddp_two_ranks_identical_teachers(tmp_path):
    worker = Path(__file__).with_name("lightning_ddp_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(worker), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 3  # 12 samples, 2 ranks, batch 2: 3 steps each
    assert r0["seed"] == r1["seed"]
    for name, t in r0["teacher"].items():
        assert torch.equal(t, r1["teacher"][name]), name
    # the ranks saw different data: their students' BN statistics differ, their teachers' do not
    assert not torch.equal(r0["student_bn_mean"], r1["student_bn_mean"])
    # and the teacher moved away from the initial student
    assert not torch.equal(r0["teacher"]["0.weight"], student_net()[0].weight)
