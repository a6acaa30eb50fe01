"""One rank of a 2-rank gloo training run; saves its student's BatchNorm statistics (test_student_bn.py)."""

import sys
from pathlib import Path

import torch
from torch import nn

from stsmooth.core import distributed
from stsmooth.training import config, train

rank, out = int(sys.argv[1]), Path(sys.argv[2])
sessions = []
setup = train.setup


def keep(*args, **kwargs):
    session = setup(*args, **kwargs)
    sessions.append(session)
    return session


train.setup = keep
cfg = config.load("byol_digits", ["progress=false", "model.options.width=8", "byol.projector_hidden=32",
                                  "byol.projector_out=16", "byol.predictor_hidden=32", "optim.batch_size=32",
                                  "optim.steps_per_epoch=3", "optim.epochs=1", "optim.warmup_epochs=0",
                                  "eval.probe_size=32", "dist.timeout_minutes=2", f"out={out / 'run'}"])
train.run(cfg)
student = sessions[0].model.student
torch.save({name: b.clone() for m_name, m in student.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)
            for name, b in ((f"{m_name}.running_mean", m.running_mean), (f"{m_name}.running_var", m.running_var))},
           out / f"bn_rank{rank}.pt")
distributed.end_worker(0)  # results on disk; gloo's teardown aborted now and then
