import pytest
import torch
from torch import nn

from stsmooth.data.imageset import ImageSet
from stsmooth.evaluate.runner import KINDS, format_table, run_eval


def blob_set(n_per_class, seed):
    """4 classes of 1x4x4 images; class c is bright in row c; a few unlabeled images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n_per_class)
    img = torch.randint(0, 40, (len(labels), 1, 4, 4), generator=g, dtype=torch.uint8)
    img[torch.arange(len(labels)), 0, labels] += 200
    labels = torch.cat([labels, torch.full((3,), -1)])
    img = torch.cat([img, img[:3]])
    return ImageSet(img, labels, ["a", "b", "c", "d"])


BACKBONE = nn.Flatten()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_runs(kind):
    options = {
        "knn": dict(k=5),
        "linear": dict(epochs=10, lr=0.5, batch_size=16),
        "finetune": dict(epochs=2, batch_size=16),
        "retrieval": dict(topk=10),
        "lowshot": dict(shots=(1, 2), draws=1, costs=(1.0, 16.0), val_per_class=3),
    }[kind]
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8)) if kind == "finetune" else BACKBONE
    res = run_eval(kind, backbone, blob_set(20, 0), blob_set(10, 1), **options)
    if kind in ("knn", "linear"):
        assert res["top1"] >= 95.0
    if kind == "retrieval":
        assert res["mAP"] >= 95.0
    if kind == "lowshot":
        assert list(res) == [1, 2]
    assert format_table(res)


def test_unknown_option_and_kind():
    with pytest.raises(ValueError, match="unknown option 'kk' for eval knn; allowed: feature_batch_size"):
        run_eval("knn", BACKBONE, blob_set(5, 0), blob_set(5, 1), kk=3)
    with pytest.raises(ValueError, match="kind must be one of knn, linear"):
        run_eval("svm", BACKBONE, blob_set(5, 0), blob_set(5, 1))


def test_format_table():
    flat = format_table({"top1": 91.234, "top5": 99.0, "k": 1000})
    assert flat.splitlines() == ["metric  value", "------  -----", "top1    91.23", "top5    99.00", "k        1000"]
    nested = format_table({1: {"top1": 40.0, "std": 1.5, "runs": [1, 2]}, 16: {"top1": 70.0, "std": 0.25, "runs": [1]}})
    assert nested.splitlines() == ["shots   top1   std", "-----  -----  ----", "1      40.00  1.50", "16     70.00  0.25"]
    assert "1e-05" in format_table({"msd": 1e-5})
