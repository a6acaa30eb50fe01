"""Atomic writes: the umask's permissions, one-line disk errors, nothing left behind (issue 14 item 8)."""

import errno
import os
import stat

import pytest
import torch

from stsmooth.errors import StsmoothError
from stsmooth.models.export import save_safetensors
from stsmooth.training import checkpoint


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoints_and_safetensors_get_the_umask_permissions(tmp_path, umask_027):
    # 0o666 less the umask 0o027 = 0o640 (an ordinary open() would give the same); today 0o600
    ck = checkpoint.save({"model": {}, "config": {}}, tmp_path / "last.pt")
    st = save_safetensors({"w": torch.zeros(3)}, tmp_path / "t.safetensors")
    assert mode(ck) == 0o640 and mode(st) == 0o640
    os.umask(0o002)
    ck = checkpoint.save({"model": {}, "config": {}}, tmp_path / "last.pt")  # replacing keeps the rule
    assert mode(ck) == 0o664


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StsmoothError, match="disk is full") as info:
        checkpoint.save({"model": {}, "config": {}}, tmp_path / "last.pt")
    assert "\n" not in str(info.value) and str(tmp_path / "last.pt") in str(info.value)
    assert os.listdir(tmp_path) == []
