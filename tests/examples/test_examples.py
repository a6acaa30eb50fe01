"""The examples run as a user would run them (tiny settings through their command-line options)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_lightning_byol(tmp_path):
    pytest.importorskip("lightning")
    out = run_example("lightning_byol.py", "--epochs", "2", "--batches", "2", "--out", str(tmp_path / "run"),
                      cwd=tmp_path)
    assert "teacher updates: 4\n" in out  # 2 epochs x 2 batches, one update per optimiser step
    top1 = float(re.search(r"teacher kNN top-1: ([\d.]+)%", out).group(1))
    assert 10 < top1 <= 100  # above chance (10 classes) even untrained: the check is that it ran end to end
    assert (tmp_path / "run" / "lightning_logs").is_dir()


@pytest.mark.slow
def test_accelerate_fixmatch(tmp_path):
    pytest.importorskip("accelerate")
    out = run_example("accelerate_fixmatch.py", "--steps", "3", "--accumulate", "2", "--mu", "2", cwd=tmp_path)
    assert "teacher updates: 3 (6 batches)\n" in out  # accumulation: one update per 2 batches
    found = re.search(r"labels per class: teacher ([\d.]+)%, student ([\d.]+)%", out)
    assert found and all(0 <= float(v) <= 100 for v in found.groups())
