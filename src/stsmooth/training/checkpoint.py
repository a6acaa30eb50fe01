"""Checkpoints: atomic save, ``weights_only`` load, random-number state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(..., weights_only=True)`` reads it without unpickling any code:

``{"format": 1, "model": state_dict, "optimizer": state_dict, "teacher":
Teacher.state_dict(), "step": int, "epoch": int, "rng": rng_state(), "config":
dict, "meta": dict, ...}``

Saving writes a temporary file in the same folder, flushes and fsyncs it, then
``os.replace`` s it over the old one: a crash at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stsmooth.errors import StsmoothError
from stsmooth.files import atomic_write

FORMAT = 1
WHICH = ("teacher", "student")  # the two networks a checkpoint holds


def save(state: dict, path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically (tmp + fsync + ``os.replace``).

    Args:
        state: a weights_only-loadable dict (tensors, numbers, str, list, dict).
        path: destination file; its folder is created when missing.

    Returns:
        The destination path.
    """
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return atomic_write(path, write)


def keep_previous(path: str | os.PathLike, last_step: int, keep: int) -> None:
    """Before ``path`` is overwritten: keeps it as ``step_<last_step>.pt`` when ``keep > 1``, pruning older ones.

    A hard link (a copy where links are not possible) keeps the old file; the next
    :func:`save` then replaces ``path`` atomically, so ``path`` is never missing.

    Args:
        path: the checkpoint about to be replaced (``checkpoints/last.pt``).
        last_step: the step it holds.
        keep: checkpoints kept in all: ``path`` and ``keep - 1`` earlier ``step_<step>.pt``.
    """
    path = Path(path)
    if keep <= 1 or not path.is_file():
        return
    kept = path.parent / f"step_{int(last_step)}.pt"
    if not kept.exists():
        try:
            os.link(path, kept)
        except OSError:
            import shutil

            shutil.copy2(path, kept)
    earlier = sorted(path.parent.glob("step_*.pt"), key=lambda p: int(p.stem[5:]) if p.stem[5:].isdigit() else -1)
    for old in earlier[: max(len(earlier) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Reads a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        StsmoothError: the file is truncated, empty, not a torch file, or holds objects
            ``weights_only`` loading refuses.
        ValueError: the file is not a stsmooth checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # its message suggests unsafe loading: not repeated here
        raise StsmoothError(f"cannot read checkpoint {str(path)!r}: it holds objects that safe (weights_only) "
                            f"loading refuses ({type(err).__name__}); it was not written by stsmooth") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsmoothError(f"cannot read checkpoint {str(path)!r} ({path.stat().st_size} bytes): truncated, empty "
                            f"or not a torch checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{str(path)!r} is not a stsmooth checkpoint (needs 'model' and 'config' entries)")
    return state


def rng_state() -> dict:
    """The global random states (torch CPU, CUDA if present, numpy, python) as plain data.

    numpy's and python's states are converted to tensors / lists so the
    checkpoint stays ``weights_only``-loadable.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def state(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer, teacher: Any, step: int, epoch: int,
          config: dict, meta: dict | None = None, **extra: Any) -> dict:
    """Assembles the checkpoint dict of a run (see the module docstring).

    Args:
        model: the method's model (unwrapped: no DDP / compile prefixes).
        optimizer: its optimiser.
        teacher: the :class:`~stsmooth.Teacher`.
        step: global steps done.
        epoch: epochs done.
        config: plain dict of the run's config.
        meta: facts the rebuild needs (e.g. ``in_channels``, ``num_classes``).
        **extra: further weights_only-loadable entries (e.g. evaluation state).
    """
    return {"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "teacher": teacher.state_dict(), "step": int(step), "epoch": int(epoch), "rng": rng_state(),
            "config": config, "meta": dict(meta or {}), **extra}


def backbone_state(state: dict, which: str = "teacher") -> dict[str, torch.Tensor]:
    """The teacher's or student's backbone tensors of a checkpoint dict, torchvision names.

    Args:
        state: a loaded checkpoint.
        which: ``"teacher"`` (what 000 §4.1 evaluates) or ``"student"``.

    Raises:
        ValueError: ``which`` is neither.
    """
    from stsmooth.models.export import torchvision_state_dict

    if which == "teacher":
        return torchvision_state_dict(state["teacher"]["module"], prefix="backbone.")
    if which == "student":
        return torchvision_state_dict(state["model"], prefix="student.backbone.")
    raise ValueError(f"which={which!r} is not one of {', '.join(WHICH)}")


def export(path: str | os.PathLike, out: str | os.PathLike, which: str = "teacher") -> Path:
    """Writes the backbone of checkpoint ``path`` to ``out`` (.safetensors, torchvision names).

    Returns:
        The written path.
    """
    from stsmooth.models.export import save_safetensors

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export target {str(out)!r} must end in .safetensors")
    state = load(path)
    meta = {"source": which, "method": str(state["config"].get("method", "")),
            "model": str(state["config"].get("model", {}).get("name", "")), "epoch": str(state.get("epoch", ""))}
    return save_safetensors(backbone_state(state, which), out, metadata=meta)
