"""Lightning DDP on 2 CPU processes (gloo) with a TeacherCallback; each rank saves its teacher.

Run as ``python lightning_ddp_worker.py OUT``: Lightning launches the second rank itself by
running this script again. Used by tests/integrations/test_lightning.py.
"""

import sys
from datetime import timedelta
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from lightning.pytorch.strategies import DDPStrategy  # noqa: E402
from lightning_net import Net, loader, trainer  # noqa: E402

from stsmooth.integrations.lightning import TeacherCallback  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    callback = TeacherCallback("student", momentum=0.7, preserve_prob=0.5, granularity="channel", norm="eman")
    model = Net()
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=60))
    t = trainer(devices=2, strategy=strategy, callbacks=[callback])
    t.fit(model, loader(6, batch_size=2))
    teacher = callback.teacher
    torch.save({"teacher": teacher.module.state_dict(), "step": teacher.step, "seed": teacher.seed,
                "student_bn_mean": model.student[1].running_mean.clone()}, out / f"rank{t.global_rank}.pt")
