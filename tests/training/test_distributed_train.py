"""DDP: a 2-process gloo job on CPU through torchrun and ``python -m stsmooth train``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stsmooth.training import config, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.epochs=2",
        "optim.warmup_epochs=1", "eval.every_epochs=2", "eval.probe_size=32", "export=false"]


@pytest.mark.slow
def test_two_process_gloo_run_keeps_teachers_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stsmooth", "train", str(ROOT / "src/stsmooth/recipes/byol_digits.yaml"), *TINY, f"out={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp/results.json").read_text())
    assert ddp["distributed"] == {"world_size": 2, "teacher_max_abs_diff": 0.0}
    # the same global batches, split across the two ranks: quality comparable to one process
    single = train.run(config.load(ROOT / "src/stsmooth/recipes/byol_digits.yaml", TINY + [f"out={tmp_path / 'one'}"]))
    assert abs(ddp["teacher"]["knn_top1"] - single["teacher"]["knn_top1"]) < 10
    assert abs(ddp["student"]["knn_top1"] - single["student"]["knn_top1"]) < 10
    assert ddp["teacher"]["knn_top1"] > 50  # far above chance (10 %)
