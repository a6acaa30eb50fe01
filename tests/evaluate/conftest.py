import pytest
import torch


def _clusters(n_per_class, classes, dim, seed, spread=0.6):
    """Gaussian blobs around +-3 e_c: linearly separable with a wide margin."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(classes, dim)
    for c in range(classes):
        centres[c, c // 2] = 3.0 if c % 2 == 0 else -3.0
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    return feats, labels


@pytest.fixture
def clusters():
    """``clusters(n_per_class, classes, dim, seed, spread=0.6) -> (features, labels)``."""
    return _clusters
