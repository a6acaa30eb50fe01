"""Building a run's model and teacher from its config: the teacher's draws follow the run's seed."""

from pathlib import Path

import torch

from stsmooth.methods import METHODS
from stsmooth.training import builder, config

ROOT = Path(__file__).resolve().parents[2]
DIGITS_META = {"in_channels": 1, "num_classes": 10, "image_size": 8, "mean": [0.3053], "std": [0.3759]}


def _drawn_units(*overrides: str) -> torch.Tensor:
    """Which neurons the teacher's first SE update (m=0, p=0.5) replaces by the student's (bool, flat).

    The student is moved by +1 before the update, so a replaced entry equals the student and a
    preserved one is 1 away: the pattern is the draw itself, whatever the initial weights are.
    """
    cfg = config.load(ROOT / "src/stsmooth/recipes/byol_digits.yaml",
                      ["model.options.width=8", "byol.projector_hidden=16", "byol.projector_out=8",
                       "byol.predictor_hidden=16", "teacher.momentum=0", "teacher.momentum_schedule=constant",
                       "teacher.preserve_prob=0.5", "teacher.granularity=neuron", *overrides])
    model, teacher, _ = builder.build_model(cfg, METHODS[cfg.method], DIGITS_META, torch.device("cpu"))
    student = dict(model.student.named_parameters())
    with torch.no_grad():
        for p in student.values():
            p.add_(1.0)
    teacher.update(model.student)
    return torch.cat([(t == student[n]).flatten() for n, t in teacher.module.named_parameters()])


def test_teacher_draws_follow_the_run_seed():
    one, two = _drawn_units("seed=1"), _drawn_units("seed=2")
    assert 0.3 < one.float().mean() < 0.7  # p = 0.5: about half of the neurons are replaced
    assert not torch.equal(one, two)  # independent seeds draw different units
    assert torch.equal(one, _drawn_units("seed=1"))  # the same seed draws the same units


def test_explicit_teacher_seed_wins_over_the_run_seed():
    assert config.load().teacher.seed is None  # default: derived from the run's seed
    assert torch.equal(_drawn_units("seed=1", "teacher.seed=7"), _drawn_units("seed=2", "teacher.seed=7"))
    assert not torch.equal(_drawn_units("seed=1", "teacher.seed=7"), _drawn_units("seed=1", "teacher.seed=8"))
