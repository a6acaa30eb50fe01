"""Export a backbone's weights under torchvision's names, as safetensors.

Our ResNets already carry torchvision's names (see `stsmooth.models.resnet`),
so exporting is removing what wraps them: ``module.`` (DistributedDataParallel,
DataParallel), ``_orig_mod.`` (``torch.compile``) and ``backbone.`` (a method
that holds the backbone next to its heads). The result loads with
``torchvision.models.resnet50().load_state_dict(sd)`` (``strict=False`` when
the backbone was built with ``num_classes=0`` and so has no ``fc``) and in
detection codebases that read torchvision checkpoints.

safetensors holds tensors only, so nothing is unpickled on load (paper 000
§4.1 evaluates the exported backbones downstream).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from stsmooth.files import atomic_write

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
BACKBONE_PREFIX = "backbone."


def _strip_wrappers(key: str) -> str:
    # Wrappers can nest in any order (DDP around a compiled module, ...).
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def torchvision_state_dict(backbone: nn.Module | Mapping[str, torch.Tensor],
                           prefix: str = BACKBONE_PREFIX) -> dict[str, torch.Tensor]:
    """The backbone's tensors under torchvision's names, detached, on CPU, contiguous.

    Args:
        backbone: a module (possibly wrapped by DDP / ``torch.compile``, or a
            method holding it as ``.backbone``) or a state dict of one.
        prefix: sub-module to extract. When any key (after removing
            ``module.`` / ``_orig_mod.``) starts with it, only those keys are
            kept, with the prefix removed — heads such as a projector are
            dropped. Pass ``""`` to keep everything.

    Returns:
        dict name -> tensor, independent copies (safe to save or modify).

    Raises:
        ValueError: not a module or mapping, no tensors, or two keys that
            become the same name.
    """
    if isinstance(backbone, nn.Module):
        state = backbone.state_dict()
    elif isinstance(backbone, Mapping):
        state = backbone
    else:
        raise ValueError(f"backbone of type {type(backbone).__name__} is invalid; pass an nn.Module or a state dict")
    items = [(_strip_wrappers(k), v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    if prefix and any(k.startswith(prefix) for k, _ in items):
        items = [(_strip_wrappers(k[len(prefix):]), v) for k, v in items if k.startswith(prefix)]
    if not items:
        raise ValueError("backbone has no tensors to export")
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        if key in out:
            raise ValueError(f"two tensors map to the name {key!r} after removing wrapper prefixes")
        # clone: safetensors refuses tensors that share storage, and the
        # export must not change when training continues.
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write tensors to a .safetensors file atomically (temporary file, then ``os.replace``).

    A crash mid-write leaves the previous file intact, never a truncated one.

    Args:
        state: name -> tensor (e.g. from `torchvision_state_dict`).
        path: destination; its parent folder is created if missing.
        metadata: optional string -> string header entries.

    Returns:
        The destination path.
    """
    from safetensors.torch import save

    path = Path(path)
    if not state:
        raise ValueError(f"state for {path} is empty; nothing to save")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state[{key!r}] is a {type(value).__name__}; safetensors holds tensors only")
        tensors[key] = value.detach().to("cpu").contiguous()
    blob = save(tensors, metadata=dict(metadata) if metadata else None)  # bytes: a full disk is an OSError

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    return atomic_write(path, write)


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Read a .safetensors file into a dict name -> tensor (no unpickling involved)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    return load_file(str(path), device=device)
