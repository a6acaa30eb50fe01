"""A training run in its own process for tests/training/test_reliability.py (kill -9, SIGTERM).

    python reliability_child.py STEPS_FILE key=value ...
    torchrun --nproc_per_node 2 reliability_child.py STEPS_FILE key=value ...

Runs ``stsmooth train`` on the tiny digits recipe; after every finished step it
appends the step count to STEPS_FILE (flushed), so the test knows how many steps
were done when it killed the process. The exit status is the command line's.
"""

import os
import sys
from pathlib import Path

import torch

from stsmooth import cli
from stsmooth.training import train

torch.set_num_threads(1)
steps_file = Path(sys.argv[1])
real_step = train.train_step


def recording_step(model, teacher, optimizer, batch, step, *args, **kwargs):
    out = real_step(model, teacher, optimizer, batch, step, *args, **kwargs)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 counts
        with open(steps_file, "a") as f:
            f.write(f"{step + 1}\n")
    return out


train.train_step = recording_step
raise SystemExit(cli.main(["train", "byol_digits", *sys.argv[2:]]))
