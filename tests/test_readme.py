"""The README's API examples run as written (with small stand-ins for the user's objects)."""

import re
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    predictor = nn.Linear(3, 3)
    namespace = {
        "student": student,
        "predictor": predictor,
        "optimizer": torch.optim.SGD([*student.parameters(), *predictor.parameters()], lr=0.1),
        "total_steps": 4,
        "loader": DataLoader(TensorDataset(torch.randn(32, 4), torch.randn(32, 4)), batch_size=8),
        "byol_loss": lambda p, z: (2 - 2 * nn.functional.cosine_similarity(p, z)).mean(),
        "teacher_net": nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)),
        "student_net": nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)),
        "step": 3,
    }
    before = [p.clone() for p in namespace["teacher_net"].parameters()]
    examples = blocks()
    assert len(examples) >= 2
    for code in examples:
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["teacher"].step == 4
    assert Path("teacher.pt").is_file()
    # the Lightning example: 2 epochs of 4 batches, one teacher update per optimiser step
    assert namespace["callback"].teacher.step == 8
    # the functional example moved some channels of teacher_net towards student_net
    assert any(not torch.equal(a, b) for a, b in zip(before, namespace["teacher_net"].parameters()))
