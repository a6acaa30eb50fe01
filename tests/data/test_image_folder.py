import numpy as np
import pytest
import torch
from PIL import Image

from stsmooth.data.folder import FolderLoader, FolderSet, probe
from stsmooth.data.registry import load


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path):
    """root/{train,val}/{cat,dog}/ with PNGs (exact pixels) and a JPEG of another size."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("dog", "cat"):
            for i in range(n):
                arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                p = tmp_path / split / cls / f"{i}.png"
                _png(p, arr)
                pixels[str(p)] = arr
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "train" / "cat" / "big.JPG", quality=90)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path, pixels


def test_scan_and_exact_pixels(folder):
    root, pixels = folder
    fs = FolderSet(root, split="val")
    assert fs.classes == ["cat", "dog"] and len(fs) == 2 and fs.labels.tolist() == [0, 1]
    img, label = fs[1]
    assert img.dtype == torch.uint8 and img.shape == (3, 12, 10) and label == 1
    assert torch.equal(img, torch.from_numpy(pixels[fs.samples[1][0]]).permute(2, 0, 1))
    gray = FolderSet(root, split="val", mode="L")[0][0]
    assert gray.shape == (1, 12, 10)


def test_resize_options(folder):
    root, _ = folder
    fs = FolderSet(root, split="train", size=8)
    assert len(fs) == 7 and fs.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]  # big.JPG + 3 PNG cats, 3 dogs
    assert all(fs[i][0].shape == (3, 8, 8) for i in range(len(fs)))
    rect = FolderSet(root, split="train", size=(6, 9))
    assert rect[0][0].shape == (3, 6, 9)
    s = fs.to_imageset()
    assert s.images.shape == (7, 3, 8, 8) and s.classes == ["cat", "dog"]
    part = fs.subset(torch.tensor([6, 0]))
    assert len(part) == 2 and part.labels.tolist() == [1, 0] and len(fs) == 7
    assert torch.equal(part[0][0], fs[6][0]) and part.classes == fs.classes
    with pytest.raises(ValueError, match="subset index out of range for 7 images"):
        fs.subset([7])


def test_splits_and_aliases(folder, tmp_path):
    root, _ = folder
    assert len(load("folder", root, split="test")) == 2  # "test" falls back to val/
    with pytest.raises(FileNotFoundError, match="no split folder 'extra'.*found: train, val"):
        FolderSet(root, split="extra")
    flat = tmp_path / "flat"
    _png(flat / "a" / "x.png", np.zeros((4, 4, 3), np.uint8))
    assert len(FolderSet(flat, split="train")) == 1  # no split folders: root itself is the train set
    assert len(FolderSet(flat)) == 1


def test_loader_order_and_coverage(folder):
    root, _ = folder
    loader = FolderLoader(root, batch_size=3, split="train", size=8, drop_last=False, seed=5, num_workers=0)
    assert len(loader) == 3
    loader.set_epoch(2)
    first = [(x.clone(), y.clone()) for x, y in loader]
    assert [len(y) for _, y in first] == [3, 3, 1]
    assert sorted(torch.cat([y for _, y in first]).tolist()) == [0, 0, 0, 0, 1, 1, 1]
    expected = torch.stack([loader.dataset[i][0] for i in loader.order().tolist()])
    assert torch.equal(torch.cat([x for x, _ in first]), expected)
    # two worker processes give the same batches as the main process
    workers = FolderLoader(root, batch_size=3, split="train", size=8, drop_last=False, seed=5, num_workers=2)
    workers.set_epoch(2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, workers))


def test_errors(folder, tmp_path):
    root, _ = folder
    with pytest.raises(ValueError, match="images have different sizes .* pass size=S"):
        FolderSet(root, split="train").to_imageset()
    with pytest.raises(ValueError, match="different sizes"):
        list(FolderLoader(root, batch_size=7, split="train", num_workers=0))
    bad = tmp_path / "bad"
    _png(bad / "a" / "ok.png", np.zeros((4, 4, 3), np.uint8))
    (bad / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    fs = FolderSet(bad)
    with pytest.raises(ValueError, match=r"cannot read image .*broken.png"):
        fs[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no class sub-folders"):
        FolderSet(empty)
    (empty / "cls").mkdir()
    (empty / "cls" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"class folder .*cls has no images"):
        FolderSet(empty)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        FolderSet(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="size -3"):
        FolderSet(root, split="val", size=-3)
    with pytest.raises(ValueError, match="gives no batch"):
        FolderLoader(root, batch_size=10, split="val", size=4, num_workers=0)


def test_probe_reads_headers_and_stops_when_the_answer_is_known(folder, tmp_path):
    root, _ = folder
    train = FolderSet(root, split="train")
    paths = [p for p, _ in train.samples]
    big = next(p for p in paths if p.endswith("big.JPG"))
    assert probe(paths) == ({(10, 12): paths[0], (30, 20): big}, False)  # (width, height): first file
    flat = tmp_path / "gray"
    _png(flat / "a" / "0.png", np.zeros((5, 7), np.uint8))
    _png(flat / "a" / "1.png", np.zeros((5, 7), np.uint8))
    gray_paths = [p for p, _ in FolderSet(flat).samples]
    assert probe(gray_paths) == ({(7, 5): gray_paths[0]}, True)
    # A colour image answers the channel question: nothing after it is opened (the broken file is not read).
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert probe([paths[0], str(broken)], sizes=False) == ({}, False)
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        probe([paths[0], str(broken)])
    # max_sizes distinct sizes end the size scan of a colour folder
    assert len(probe([paths[0], big, str(broken)], max_sizes=2)[0]) == 2
