"""Student-teacher methods: one file each, with its heads, loss and config.

:data:`METHODS` lists them, imported by name as any module is. Each module
keeps the contract written out in :mod:`stsmooth.methods.contract`
(:class:`~stsmooth.methods.contract.Method`):

* ``kind``: :data:`~stsmooth.methods.contract.SELF_SUPERVISED` or
  :data:`~stsmooth.methods.contract.SEMI_SUPERVISED`: which data and batches
  the loop gives the method and how it scores it;
* ``Config``: a dataclass; it is the config section named after the module
  (:class:`stsmooth.training.config.RunConfig`);
* ``validate(cfg)``: one-line errors for bad ``Config`` values, called once
  when the run's config is loaded;
* ``augment_recipes(cfg) -> {key: recipe}``: the :mod:`stsmooth.augment`
  recipes the method wants in its ``augment`` dict. The training loop builds
  them (each maps a uint8 batch to floats in [0, 1]) and adds
  ``augment["normalize"]`` (the data set's mean/std) and ``augment["eval"]``
  (resize / centre only); the student applies ``normalize`` itself, so it
  accepts uint8 or [0, 1] images everywhere (training, teacher, evaluation);
* ``build(cfg, backbone, num_classes, augment) -> model``, a
  :class:`~stsmooth.methods.contract.MethodModel`: ``model.student`` is what the
  :class:`~stsmooth.core.teacher.Teacher` copies and ``model.loss(batch, teacher,
  step) -> (loss, logs)`` (also ``model(batch, teacher, step)``) computes one
  step's loss (no optimiser step, no teacher update:
  :func:`stsmooth.training.train.train_step` does both).

Layer 3: imports from the core and the parts only.
"""

from __future__ import annotations

from stsmooth.methods import byol, fixmatch, mean_teacher, moco, supervised, temporal_ensembling
from stsmooth.methods.contract import Method

#: Every method, in display order; ``method=<name>`` in a config selects one.
METHODS: dict[str, Method] = {
    "byol": byol,
    "moco": moco,
    "fixmatch": fixmatch,
    "mean_teacher": mean_teacher,
    "temporal_ensembling": temporal_ensembling,
    "supervised": supervised,
}

__all__ = ["METHODS"]
