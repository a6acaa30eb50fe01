import math

import pytest
import torch
import torch.nn.functional as F

from stsmooth.evaluate.knn import auto_chunk_size, knn, knn_scores


def unit(deg):
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# Query at 0°, neighbours at cosines 1 (class 0), 0.7071 (class 1), 0 (class 1), -1 (class 2).
TRAIN = torch.tensor([unit(0), unit(45), unit(90), unit(180)])
LABELS = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([unit(0)])


def test_scores_by_hand():
    s = knn_scores(TRAIN, LABELS, QUERY, k=3, temperature=0.5)
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp(math.cos(math.pi / 4) / 0.5) + math.exp(0.0), 0.0]])
    assert torch.allclose(s, expected, rtol=1e-5)


def test_weighting_decides_the_vote():
    # T=0.5: e^2 = 7.39 for class 0 beats e^1.414 + 1 = 5.11 for class 1 ...
    assert knn(TRAIN, LABELS, QUERY, torch.tensor([0]), k=3, temperature=0.5)["top1"] == 100.0
    # ... T=1: e^1 = 2.72 loses to e^0.707 + 1 = 3.03 (as would a plain majority vote).
    assert knn(TRAIN, LABELS, QUERY, torch.tensor([0]), k=3, temperature=1.0)["top1"] == 0.0
    assert knn(TRAIN, LABELS, QUERY, torch.tensor([1]), k=3, temperature=1.0)["top1"] == 100.0


def test_top5_by_hand():
    # Seven classes at angles 0°, 10°, ..., 60°: the vote ranks class i at place i + 1.
    train = torch.tensor([unit(10 * i) for i in range(7)])
    labels = torch.arange(7)
    query = torch.tensor([unit(0)] * 4)
    res = knn(train, labels, query, torch.tensor([0, 4, 5, 6]), k=7)
    assert res == {"top1": 25.0, "top5": 50.0}


def test_features_are_normalised():
    # Scaling features must not change a cosine kNN.
    scaled = TRAIN * torch.tensor([[3.0], [0.1], [7.0], [2.0]])
    s1 = knn_scores(TRAIN, LABELS, QUERY * 5, k=3)
    s2 = knn_scores(scaled, LABELS, QUERY, k=3)
    assert torch.allclose(s1, s2, rtol=1e-5)


def naive_knn(train, labels, query, query_labels, k, t, c):
    train, query = F.normalize(train, dim=1), F.normalize(query, dim=1)
    scores = torch.zeros(len(query), c)
    for i, q in enumerate(query):
        sim = train @ q
        order = sim.argsort(descending=True)[:k]
        for j in order:
            scores[i, labels[j]] += torch.exp(sim[j] / t)
    ranked = scores.argsort(dim=1, descending=True)
    top1 = (ranked[:, 0] == query_labels).float().mean() * 100
    top5 = (ranked[:, :5] == query_labels[:, None]).any(dim=1).float().mean() * 100
    return scores, float(top1), float(top5)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1000, None])
def test_chunked_equals_naive(chunk_size):
    g = torch.Generator().manual_seed(1)
    train, query = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    labels, query_labels = torch.randint(0, 12, (300,), generator=g), torch.randint(0, 12, (50,), generator=g)
    scores, top1, top5 = naive_knn(train, labels, query, query_labels, 20, 0.07, 12)
    ours = knn_scores(train, labels, query, num_classes=12, chunk_size=chunk_size)
    assert torch.allclose(ours, scores, rtol=1e-4)
    res = knn(train, labels, query, query_labels, num_classes=12, chunk_size=chunk_size)
    assert res["top1"] == pytest.approx(top1) and res["top5"] == pytest.approx(top5)
    assert 0 < res["top5"] and res["top1"] <= res["top5"]


def test_auto_chunk_size():
    assert auto_chunk_size(50_000, torch.device("cpu")) == (1 << 26) // 50_000
    assert auto_chunk_size(10**12, torch.device("cpu")) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 5}, "k must be"),  # only 4 training features
        ({"k": 1, "temperature": 0.0}, "temperature"),
        ({"k": 1, "num_classes": 2}, "num_classes"),
        ({"k": 1, "chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn(TRAIN, LABELS, QUERY, torch.tensor([0]), **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="dimension"):
        knn(TRAIN, LABELS, torch.ones(1, 3), torch.tensor([0]), k=1)
    with pytest.raises(ValueError, match="labels"):
        knn(TRAIN, LABELS[:2], QUERY, torch.tensor([0]), k=1)
    with pytest.raises(ValueError, match="-1"):
        knn(TRAIN, torch.tensor([0, 1, -1, 2]), QUERY, torch.tensor([0]), k=1)
