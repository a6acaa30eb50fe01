"""The data of a run: folders of small images are read at their own size and channel count."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stsmooth.training import checkpoint, config, run_data, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=16", "byol.projector_out=8",
        "byol.predictor_hidden=16", "optim.batch_size=8", "optim.steps_per_epoch=2", "optim.warmup_epochs=0",
        "eval.probe_size=8", "export=false", "data.num_workers=0"]


def _write(root: Path, sizes: dict[str, tuple[int, int]], n: int = 4, mode: str = "L") -> dict[str, np.ndarray]:
    """``root/<split>/<class>/<i>.png`` with ``n`` images per class; sizes[split] = (height, width)."""
    rng = np.random.default_rng(0)
    pixels = {}
    for split, (h, w) in sizes.items():
        for cls in ("zero", "one"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (h, w) if mode == "L" else (h, w, 3)
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                path = root / split / cls / f"{i}.png"
                Image.fromarray(arr).save(path)
                pixels[str(path)] = arr
    return pixels


def _cfg(root, *extra):
    return config.load(ROOT / "src/stsmooth/recipes/byol_digits.yaml", TINY + ["data.name=folder", f"data.root={root}", *extra])


def test_folder_of_28px_grayscale_pngs_is_read_at_28px_one_channel(tmp_path):
    pixels = _write(tmp_path, {"train": (28, 28), "val": (28, 28)})
    cfg = _cfg(tmp_path)
    assert cfg.data.image_size == 0 and cfg.data.channels == 0  # unset: the folder decides
    sets = run_data.load(cfg)
    assert (sets.meta["image_size"], sets.meta["in_channels"]) == (28, 1)
    assert (cfg.data.image_size, cfg.data.decode_size, cfg.data.channels) == (28, 28, 1)  # resolved in cfg
    for s in (sets.train, sets.test):
        image, _ = s[1]
        # the stored pixels, not a resampled 224x224 RGB copy
        assert image.shape == (1, 28, 28) and torch.equal(image[0], torch.from_numpy(pixels[s.samples[1][0]]))
    # 1-channel statistics measured on the images (ImageNet's RGB table does not apply)
    train_pixels = np.stack([pixels[p] for p, _ in sets.train.samples]).astype(np.float64) / 255
    assert sets.meta["mean"] == pytest.approx([train_pixels.mean()], abs=1e-5)
    assert sets.meta["std"] == pytest.approx([train_pixels.std(ddof=1)], abs=1e-4)


def test_channels_and_size_when_asked(tmp_path):
    _write(tmp_path, {"train": (28, 28), "val": (28, 28)})
    cfg = _cfg(tmp_path, "data.channels=3")
    sets = run_data.load(cfg)
    assert sets.meta["in_channels"] == 3 and sets.train[0][0].shape == (3, 28, 28)
    cfg = _cfg(tmp_path, "data.image_size=16")
    sets = run_data.load(cfg)
    assert sets.meta["image_size"] == 16 and sets.meta["in_channels"] == 1
    assert sets.train[0][0].shape == (1, 18, 18)  # decoded at 16 * 8 / 7, cropped to 16 by the augmentations


def test_rgb_folder_keeps_three_channels(tmp_path):
    _write(tmp_path, {"train": (20, 20), "val": (20, 20)}, mode="RGB")
    sets = run_data.load(_cfg(tmp_path))
    assert (sets.meta["image_size"], sets.meta["in_channels"]) == (20, 3)
    assert sets.meta["mean"] == pytest.approx([0.485, 0.456, 0.406])  # ImageNet-like folders


def test_mixed_sizes_stop_with_one_line_naming_them(tmp_path):
    _write(tmp_path, {"train": (28, 28), "val": (32, 32)})
    with pytest.raises(ValueError, match=r"28x28.*32x32.*data\.image_size") as info:
        run_data.load(_cfg(tmp_path))
    assert "\n" not in str(info.value)
    _write(tmp_path / "rect", {"train": (30, 40), "val": (30, 40)})
    with pytest.raises(ValueError, match=r"40x30.*not square.*data\.image_size"):
        run_data.load(_cfg(tmp_path / "rect"))


def test_channels_is_checked():
    with pytest.raises(ValueError, match=r"data.channels=2.*0, 1, 3"):
        config.load(overrides=["data.channels=2"])
    with pytest.raises(ValueError, match=r"data.channels=3.*folder"):
        config.load(overrides=["data.name=digits", "data.channels=3"])


def test_training_on_a_folder_saves_the_resolved_size(tmp_path):
    _write(tmp_path / "data", {"train": (28, 28), "val": (28, 28)})
    cfg = _cfg(tmp_path / "data", f"out={tmp_path / 'run'}", "optim.epochs=1", "eval.knn_k=3")
    train.run(cfg)
    saved = config.load(tmp_path / "run/config.yaml").data
    assert (saved.image_size, saved.decode_size, saved.channels) == (28, 28, 1)
    meta = checkpoint.load(tmp_path / "run/checkpoints/last.pt")["meta"]
    assert (meta["image_size"], meta["in_channels"]) == (28, 1)
