"""The training Monitor: exact top-k counts, evaluation in eval mode with the flags restored,
and the Fig. 3 smoothness measures of stsmooth.evaluate between evaluations."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet, to_float
from stsmooth.methods.contract import SEMI_SUPERVISED
from stsmooth.training.config import EvalConfig
from stsmooth.training.monitor import Monitor


class ModClassifier(nn.Module):
    """Predicts class (pixel value % 3); logits = one-hot + w, so w moves outputs but not predictions."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.drop = nn.Dropout(0.5)
        self.modes = []

    def forward(self, x):
        self.modes.append((self.training, self.drop.training))
        value = (x.flatten(1)[:, 0] * 255).round().long()
        return nn.functional.one_hot(value % 3, 3).float() + self.w


def test_accuracy_is_an_exact_count_and_smoothness_is_evaluates():
    test = ImageSet(torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1), torch.tensor([0, 1, 0]), ["a", "b", "c"])
    monitor = Monitor(SEMI_SUPERVISED, None, test, to_float, torch.device("cpu"),
                      EvalConfig(probe_size=3, batch_size=2), num_classes=3)
    student, teacher = ModClassifier(), SimpleNamespace(module=ModClassifier())
    student.train()
    teacher.module.drop.eval()  # a deliberately frozen part keeps its own flag
    first = monitor.evaluate(student, teacher)
    # 2 of 3 right (image 2 is class 2, labelled 0): 100 * 2 / 3 exactly, every class within the top 3
    assert first["teacher_top1"] == first["student_top1"] == 100.0 * 2 / 3 and first["teacher_top5"] == 100.0
    assert math.isnan(first["param_msd"]) and math.isnan(first["output_msd"])
    assert set(student.modes + teacher.module.modes) == {(False, False)}  # evaluated in eval mode
    assert student.training and student.drop.training and teacher.module.training
    assert not teacher.module.drop.training  # flags restored per submodule
    with torch.no_grad():
        teacher.module.w += torch.tensor([0.5, 0.5, -1.0])
    second = monitor.evaluate(student, teacher)
    # (0.25 + 0.25 + 1) / 3 for the parameter, and for every output element alike
    assert second["param_msd"] == pytest.approx(0.5) and second["output_msd"] == pytest.approx(0.5)
    restored = Monitor(SEMI_SUPERVISED, None, test, to_float, torch.device("cpu"), EvalConfig(probe_size=3),
                       num_classes=3)
    restored.load_state_dict(monitor.state_dict())
    assert restored.evaluate(student, teacher)["param_msd"] == 0.0  # the snapshot travels with the checkpoint
