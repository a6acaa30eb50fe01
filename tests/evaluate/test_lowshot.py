import pytest
import torch
from sklearn.linear_model import LogisticRegression

from stsmooth.evaluate.lowshot import fit_logistic, lowshot

FAST = dict(draws=2, costs=(0.25, 4.0, 64.0), val_per_class=5)


def test_one_entry_per_shot(clusters):
    x, y = clusters(24, 5, 10, seed=0, spread=1.0)
    xt, yt = clusters(40, 5, 10, seed=1, spread=1.0)
    res = lowshot(x, y, xt, yt, shots=(1, 4, 16), **FAST)
    assert list(res) == [1, 4, 16]
    for k, r in res.items():
        assert len(r["runs"]) == 2 and len(r["cost"]) == 2
        assert set(r["cost"]) <= {0.25, 4.0, 64.0}
        assert r["top1"] == pytest.approx(sum(r["runs"]) / 2)
        assert r["std"] == pytest.approx(abs(r["runs"][0] - r["runs"][1]) / 2**0.5)
    # scikit-learn's LogisticRegression on all 24 images per class reaches 89-95% here
    assert res[16]["top1"] >= 88.0 and res[16]["top1"] > res[1]["top1"]


def test_regularisation_chosen_without_test_data(clusters):
    x, y = clusters(24, 5, 10, seed=0, spread=2.0)
    xt, yt = clusters(20, 5, 10, seed=1, spread=2.0)
    res = lowshot(x, y, xt, yt, shots=(2, 8), **FAST)
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(9))
    res_noise = lowshot(x, y, noise, yt.flip(0), shots=(2, 8), **FAST)
    for k in (2, 8):
        assert res[k]["cost"] == res_noise[k]["cost"]  # the test set never moves the choice
        assert res[k]["runs"] != res_noise[k]["runs"]


def test_matches_sklearn_logistic_regression(clusters):
    x, y = clusters(8, 3, 4, seed=2, spread=2.0)
    x = x.double()
    for cost in (0.1, 1.0):
        w, b = fit_logistic(x, y, 3, cost=cost, max_iter=500)
        ref = LogisticRegression(C=cost, tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
        ours = torch.softmax(x @ w.T + b, dim=1).numpy()
        assert abs(ours - ref.predict_proba(x.numpy())).max() < 1e-4


def test_too_few_images_in_a_class(clusters):
    x, y = clusters(20, 3, 4, seed=0)
    with pytest.raises(ValueError, match="class 0 has 20 training images; low-shot needs 26"):
        lowshot(x, y, x, y, shots=(16,), val_per_class=10)
