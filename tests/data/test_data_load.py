import pytest

from stsmooth.data.registry import default_root, load, names, split_names


def test_names_and_splits():
    assert names() == ["cifar10", "cifar100", "digits", "fashion_mnist", "folder", "mnist", "npz", "stl10", "svhn"]
    assert split_names("svhn") == ("train", "test", "extra") and split_names("stl10") == ("train", "test", "unlabeled")
    assert split_names("folder") is None


def test_unknown_name_split_option():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; allowed: cifar10, cifar100, digits"):
        load("imagenet")
    with pytest.raises(ValueError, match="digits: unknown split 'val'; allowed: train, test, all"):
        load("digits", split="val")
    with pytest.raises(ValueError, match="digits: unknown option 'size'; allowed: none"):
        load("digits", size=3)
    with pytest.raises(ValueError, match="cifar100: unknown option 'fine'; allowed: labels"):
        load("cifar100", "/nonexistent", fine=True)
    with pytest.raises(ValueError, match="folder: root is required"):
        load("folder")
    with pytest.raises(ValueError, match="folder: download=True is not possible"):
        load("folder", "/tmp", download=True)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("STSMOOTH_DATA", str(tmp_path))
    assert default_root("cifar10") == tmp_path / "cifar10"
    with pytest.raises(FileNotFoundError, match=f"expected at {tmp_path}/cifar10/cifar-10-batches-bin/data_batch_1.bin"):
        load("cifar10")
    monkeypatch.delenv("STSMOOTH_DATA")
    assert default_root("mnist").parts[-3:] == ("stsmooth", "datasets", "mnist")
