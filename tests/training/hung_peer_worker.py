"""One rank of a 2-rank gloo job whose peer hangs (tests/training/test_dist_hygiene.py).

Rank 1 joins the process group and then sleeps, as a rank stuck in I/O or a dead
node would; rank 0 runs ``stsmooth train`` with ``dist.timeout_minutes`` and must fail
with the CLI's status 1 and the backend's timeout on stderr, not wait or abort.
"""

import sys
import time
from pathlib import Path

import torch.distributed as tdist

from stsmooth import cli

rank, out = int(sys.argv[1]), Path(sys.argv[2])
if rank == 1:
    tdist.init_process_group("gloo")
    time.sleep(600)
    sys.exit(0)
sys.exit(cli.main(["train", "byol_digits", "progress=false", "model.options.width=8", "optim.batch_size=32",
                   "optim.steps_per_epoch=1", "optim.epochs=1", "export=false", "dist.timeout_minutes=0.05",
                   f"out={out / 'run'}"]))
