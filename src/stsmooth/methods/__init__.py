"""Student-teacher methods: one file each, with its heads, loss and config.

The one registry of methods. Each method module provides

* ``kind``: ``"self_supervised"`` (batches ``{"x", "y"}``) or
  ``"semi_supervised"`` (batches ``{"x_l", "y_l", "x_u"}``, ``x_u`` holding
  ``Config.mu`` x B images; ``mu = 0`` or a missing ``mu`` means no ``x_u``);
* ``Config``: a dataclass; it becomes the config section named after the module;
* ``build(cfg, backbone, num_classes, augment) -> model`` where ``model.student``
  is what the :class:`~stsmooth.Teacher` copies and ``model.loss(batch, teacher,
  step) -> (loss, logs)`` computes one step's loss (no optimiser step, no teacher
  update: :func:`stsmooth.training.train.train_step` does both);
* ``augment_recipes(cfg) -> {key: recipe}``: the :mod:`stsmooth.augment`
  recipes the method wants in its ``augment`` dict. The training loop builds
  them (each maps a uint8 batch to floats in [0, 1]) and adds
  ``augment["normalize"]`` (the data set's mean/std) and ``augment["eval"]``
  (resize / centre only); the student applies ``normalize`` itself, so it
  accepts uint8 or [0, 1] images everywhere (training, teacher, evaluation).

Layer 3: imports from the core and the parts only.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: Every method the project knows, in display order. A name whose file does
#: not exist (yet) is skipped, so the config schema only has sections that exist.
NAMES = ("byol", "moco", "fixmatch", "mean_teacher", "temporal_ensembling", "supervised")

KINDS = ("self_supervised", "semi_supervised")


def available() -> dict[str, ModuleType]:
    """``{name: module}`` of every method whose file exists, in :data:`NAMES` order.

    A file that exists but fails to import raises: a broken method must not
    silently vanish from the config schema.
    """
    found = {}
    for name in NAMES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            found[name] = importlib.import_module(f"{__name__}.{name}")
    return found


def get(name: str) -> ModuleType:
    """The method module called ``name``.

    Raises:
        ValueError: ``name`` is not an available method.
    """
    mods = available()
    if name not in mods:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(mods)}")
    mod = mods[name]
    if getattr(mod, "kind", None) not in KINDS:
        raise ValueError(f"method {name!r} must define kind as one of {KINDS}")
    return mod
