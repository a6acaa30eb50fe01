"""Faults of the input and the machine: one line on stderr, exit status 2, no traceback (issue 14 item 6)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stsmooth.training import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=2", "optim.epochs=1",
        "optim.warmup_epochs=0", "eval.probe_size=32", "export=false"]


def stsmooth(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "stsmooth", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=300)


def one_line_status_2(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "\n" not in err and "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in err, err
    return err


def fake_checkpoint(path: Path) -> Path:
    """A checkpoint holding a teacher backbone: enough for ``stsmooth export``."""
    state = {"model": {}, "config": {"method": "byol", "model": {"name": "resnet18"}},
             "teacher": {"module": {"backbone.conv1.weight": torch.arange(64.0).reshape(4, 16)}}, "epoch": 1}
    return ckpt.save(state, path)


class Refused:  # a class weights_only=True does not unpickle
    pass


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "pickled_object"])
def test_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    path = fake_checkpoint(tmp_path / "last.pt")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"model": {}, "config": {}, "extra": Refused()}, path)
    for argv in (["export", str(path), str(tmp_path / "t.safetensors")], ["eval", "knn", str(path)]):
        err = one_line_status_2(stsmooth(*argv), str(path))
        assert "weights_only=False" not in err


def test_export_out_under_a_file_is_one_line(tmp_path):
    path = fake_checkpoint(tmp_path / "last.pt")
    (tmp_path / "afile").write_text("x")
    one_line_status_2(stsmooth("export", str(path), str(tmp_path / "afile" / "t.safetensors")), "afile")


def test_train_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_status_2(stsmooth("train", "byol_digits", *TINY, f"out={tmp_path / 'afile'}"), "out=", "file")


@pytest.fixture
def small_mount(tmp_path):
    """Mounts a tmpfs of 64 KiB (read-only or not) at tmp_path/mnt; skips where mounting is not allowed."""
    mounted = []

    def mount(readonly: bool) -> Path:
        where = tmp_path / ("ro" if readonly else "full")
        where.mkdir()
        opts = "size=64k" + (",ro" if readonly else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_export_to_a_read_only_disk_is_one_line(tmp_path, small_mount):
    where = small_mount(readonly=True)
    path = fake_checkpoint(tmp_path / "last.pt")
    one_line_status_2(stsmooth("export", str(path), str(where / "t.safetensors")), "read-only")


def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_mount):
    where = small_mount(readonly=False)
    state = {"model": {}, "config": {}, "teacher": {"module": {"backbone.conv1.weight": torch.zeros(64, 1024)}}}
    path = ckpt.save(state, tmp_path / "big.pt")  # 256 KiB of weights: more than the 64 KiB disk
    one_line_status_2(stsmooth("export", str(path), str(where / "t.safetensors")), "disk is full")
    assert list(where.iterdir()) == []  # no temporary file left behind


def test_download_without_network_is_one_line(tmp_path):
    # a proxy nobody listens on stands for a machine without network
    proxy = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
             "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    one_line_status_2(stsmooth("train", "byol_digits", *TINY, "data.name=mnist", f"data.root={tmp_path / 'mnist'}",
                               "data.download=true", f"out={tmp_path / 'run'}", env=proxy), "download")


def npz_run(tmp_path, images, labels):
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    return stsmooth("train", "byol_digits", *TINY, "data.name=npz", f"data.root={tmp_path / 'd.npz'}",
                    f"out={tmp_path / 'run'}")


def test_empty_npz_is_one_line(tmp_path):
    one_line_status_2(npz_run(tmp_path, np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64)), "no images")


@pytest.mark.parametrize("shape", [(40, 3, 8, 8), (40, 8, 8, 4)])
def test_npz_channels_first_or_four_channels_names_the_layout(tmp_path, shape):
    images = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    one_line_status_2(npz_run(tmp_path, images, np.arange(40) % 2), "(N, H, W, C)", str(shape))


def test_batch_size_one_with_batchnorm_is_one_line(tmp_path):
    argv = [a for a in TINY if not a.startswith("optim.batch_size")]
    one_line_status_2(stsmooth("train", "byol_digits", *argv, "optim.batch_size=1", f"out={tmp_path / 'run'}"),
                      "optim.batch_size=1", "BatchNorm")


def test_data_root_with_digits_is_an_error(tmp_path):
    one_line_status_2(stsmooth("train", "byol_digits", *TINY, f"data.root={tmp_path}", f"out={tmp_path / 'run'}"),
                      "data.root", "digits")


def image_folder(root: Path, bad: bool) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(20):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    if bad:
        (root / "train" / "a" / "7.png").write_bytes(b"not a png at all")
    return root


def test_a_bad_image_in_a_worker_names_the_file(tmp_path):
    root = image_folder(tmp_path / "imgs", bad=True)
    argv = ["train", "byol_digits", *TINY, "data.name=folder", f"data.root={root}", "data.test_split=val",
            "data.num_workers=1", "data.image_size=8", "data.channels=3", "optim.batch_size=40", "optim.steps_per_epoch=1", f"out={tmp_path / 'run'}"]
    err = one_line_status_2(stsmooth(*argv), "7.png", "data.skip_bad_images=true")
    assert "DataLoader worker" not in err and "Original Traceback" not in err
    skipped = stsmooth(*argv[:-1], "data.skip_bad_images=true", f"out={tmp_path / 'run2'}")
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "skipped 1 unreadable image" in skipped.stderr
