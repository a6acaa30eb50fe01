"""The demo (training/demo.py): four teacher rules, MoCo on Fashion-MNIST when installed, else BYOL on digits."""

import gzip
import struct

import numpy as np
import pytest

from stsmooth.data import registry
from stsmooth.data.mnist import FILES
from stsmooth.training import demo


def _point_fashion_mnist_at(monkeypatch, folder):
    """Makes ``folder`` the only place a run with data.root unset looks for Fashion-MNIST."""
    files = registry.SYSTEM_ROOTS["fashion_mnist"][1]
    monkeypatch.setitem(registry.SYSTEM_ROOTS, "fashion_mnist", (folder, files))
    monkeypatch.setenv("STSMOOTH_DATA", str(folder / "cache"))  # empty: no copy in the cache either


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape) + \
        array.astype(np.uint8).tobytes()


def _write_fashion_mnist(root, n_train=64, n_test=40):
    """Tiny but valid idx files in Fashion-MNIST's names: random 28x28 images, labels 0..9."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = FILES[split]
        (root / f"{images_name}.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28)))))
        (root / f"{labels_name}.gz").write_bytes(gzip.compress(_idx(np.arange(n) % 10)))


def test_fashion_mnist_is_chosen_only_when_all_its_files_are_installed(tmp_path, monkeypatch):
    _point_fashion_mnist_at(monkeypatch, tmp_path)
    for name in registry.SYSTEM_ROOTS["fashion_mnist"][1]:
        (tmp_path / name).write_bytes(b"")
    recipe, overrides, reason = demo.choose_data("auto")
    assert (recipe, overrides) == ("moco_fashion", demo.FASHION_OVERRIDES)
    assert reason.startswith("Fashion-MNIST") and str(tmp_path) in reason
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()  # one file missing: not installed
    recipe, overrides, reason = demo.choose_data("auto")
    assert (recipe, overrides) == ("byol_digits", [])
    assert reason.startswith("digits (Fashion-MNIST is not installed")
    assert demo.choose_data("digits")[0] == "byol_digits"
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found in .*--data digits"):
        demo.choose_data("fashion_mnist")
    with pytest.raises(ValueError, match="demo data 'cifar' is not allowed; allowed: auto, fashion_mnist, digits"):
        demo.choose_data("cifar")


def test_demo_trains_moco_on_fashion_mnist_when_its_files_are_there(tmp_path, monkeypatch, capsys):
    data = tmp_path / "fashion"
    data.mkdir()
    _write_fashion_mnist(data)
    _point_fashion_mnist_at(monkeypatch, data)
    tiny = ["optim.steps_per_epoch=2", "optim.batch_size=16", "moco.queue_size=32", "moco.projector_hidden=16",
            "eval.bank_size=0", "eval.probe_size=16"]
    records = demo.main(seeds=[0], out=str(tmp_path / "out"), epochs=2, overrides=tiny)
    assert [r["rule"] for r in records] == ["none", "TMA", "SE", "STS"]
    assert {(r["recipe"], r["data"]) for r in records} == {("moco_fashion", "fashion_mnist")}
    none, tma, se, sts = records
    # the demo's MoCo values: m = 0.95 (override of the recipe's 0.99), p = 0.5 (the recipe's), SE p = m
    assert (tma["m"], tma["p"], se["m"], se["p"], sts["m"], sts["p"]) == (0.95, 0.0, 0.0, 0.95, 0.95, 0.5)
    # the tiny files were read: the kNN test split has 40 images, so top-1 is a multiple of 2.5 %
    assert all(round(r["results"]["teacher"]["knn_top1"] / 2.5, 6).is_integer() for r in records)
    run_config = (tmp_path / "out" / "sts_seed0" / "config.yaml").read_text()
    assert "name: fmnist_cnn" in run_config and "width: 8" in run_config
    table = (tmp_path / "out" / "table.md").read_text()
    assert "fashion_mnist test split" in table and f"data: Fashion-MNIST (its files are installed in {data})" in table
    assert "averaged over 2 epochs" in table and "| random init |" in table
    assert "demo data: Fashion-MNIST" in capsys.readouterr().out
    assert none["results"]["teacher"] == none["results"]["student"]


def test_demo_falls_back_to_byol_on_digits_and_prints_the_table(tmp_path, monkeypatch, capsys):
    _point_fashion_mnist_at(monkeypatch, tmp_path)  # an empty folder: Fashion-MNIST is not installed
    tiny = ["optim.steps_per_epoch=2", "optim.batch_size=32", "byol.projector_hidden=16", "byol.predictor_hidden=16"]
    records = demo.main(seeds=[0, 1], out=str(tmp_path / "out"), epochs=2, overrides=tiny)
    assert [r["rule"] for r in records] == ["none"] * 2 + ["TMA"] * 2 + ["SE"] * 2 + ["STS"] * 2
    assert {(r["recipe"], r["data"]) for r in records} == {("byol_digits", "digits")}
    none, tma, se, sts = (records[i] for i in (0, 2, 4, 6))
    assert (none["m"], none["p"], se["m"], sts["p"]) == (0.0, 0.0, 0.0, 0.7)
    assert se["p"] == tma["m"] == 0.9
    printed = capsys.readouterr().out
    assert "| random init |" in printed and "± " in printed
    assert "data: digits (Fashion-MNIST is not installed" in printed
    assert (tmp_path / "out" / "demo.png").is_file() and (tmp_path / "out" / "table.md").is_file()
    # no smoothing: the teacher is the student after every step
    assert none["results"]["teacher"] == none["results"]["student"]
