"""Evaluation never costs training (issue 14 item 4)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stsmooth.errors import StsmoothError
from stsmooth.training import checkpoint, config, train
from stsmooth.training.monitor import Monitor

ROOT = Path(__file__).resolve().parents[2]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=2", "optim.epochs=2",
        "optim.warmup_epochs=0", "eval.every_epochs=1", "eval.probe_size=8", "export=false"]


def test_a_final_evaluation_failure_leaves_the_trained_checkpoint_and_says_how_to_evaluate(tmp_path, monkeypatch):
    calls = []

    def broken(self, student, teacher):
        calls.append(1)
        raise RuntimeError("out of memory in the kNN bank")

    monkeypatch.setattr(Monitor, "evaluate", broken)
    cfg = config.load("byol_digits", TINY + [f"out={tmp_path}"])
    with pytest.raises(StsmoothError) as info:
        train.run(cfg)
    message = str(info.value)
    assert "\n" not in message and f"stsmooth eval knn {tmp_path / 'checkpoints/last.pt'}" in message
    assert len(calls) == 2  # epoch 1's failure did not stop training; epoch 2's is the final one
    state = checkpoint.load(tmp_path / "checkpoints/last.pt")
    assert state["step"] == 4 and state["epoch"] == 2  # every step trained is kept


def test_a_bad_validation_image_fails_before_training(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(20):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / c / f"{i}.png")
    (tmp_path / "imgs/val/b/19.png").write_bytes(b"\x89PNG torn")  # the last file: after the probe's 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "stsmooth", "train", "byol_digits", *TINY, "data.name=folder",
                           f"data.root={tmp_path / 'imgs'}", "data.test_split=val", "data.image_size=8",
                           "data.channels=3", "data.num_workers=0", f"out={tmp_path / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err, err[-2000:]
    assert "evaluation data" in err and "19.png" in err
    assert not (tmp_path / "run/checkpoints/last.pt").exists()  # no training happened
