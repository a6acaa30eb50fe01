"""A PyTorch Lightning callback that keeps a smoothed teacher of a LightningModule's student.

Usage::

    from stsmooth import schedules
    from stsmooth.integrations.lightning import TeacherCallback

    class BYOL(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.student = nn.Sequential(backbone, projector)   # what the teacher copies
            self.predictor = predictor                           # student-only head
        def training_step(self, batch, batch_idx):
            v1, v2 = augment(batch)
            return byol_loss(self.predictor(self.student(v1)), self.teacher(v2))  # self.teacher: set by the callback

    callback = TeacherCallback("student", momentum=schedules.cosine(0.99, total_steps=K), preserve_prob=0.7)
    L.Trainer(callbacks=[callback]).fit(BYOL(), loader)

What it does, as the plain loop of :class:`stsmooth.Teacher` would:

- at fit start it builds ``Teacher(pl_module.<attribute>, ...)`` (any rule of paper 000
  Eq. 3, granularity, BN mode of paper 003) and sets it as ``pl_module.<name>``
  (``pl_module.teacher`` by default), so ``training_step`` can call it; it is a plain
  attribute, not a submodule, so DDP never wraps it and the model's ``state_dict`` does not
  hold it;
- after each real optimiser step it calls ``teacher.update(student, m, p)`` once, with
  ``m = momentum(k)``, ``p = preserve_prob(k)`` for the step's index ``k = global_step - 1``
  (the ``step`` of the plain loop ``for step, batch in ...``). "Real" means the optimiser's own
  ``step()`` ran (a post-step hook on ``trainer.optimizers`` sees it) and changed something
  (some parameter had a gradient): batches that only accumulate gradients, steps skipped by
  the AMP grad scaler on inf/NaN gradients, an ``optimizer_step`` override that does not call
  ``optimizer.step()``, and a ``training_step`` that returned ``None`` do not move the teacher.
  Lightning's ``global_step`` still counts the last two, so the schedules follow the same
  clock as Lightning's learning-rate schedulers;
- it saves ``teacher.state_dict()`` (weights, update count and seed, which fix all future
  draws) in Lightning checkpoints and restores it, so a resumed fit continues exactly;
- under DDP every rank updates its own teacher; :class:`~stsmooth.Teacher` agrees on the seed
  once and averages the student's BatchNorm statistics, so the teachers stay bit-identical;
- it logs m and p each update through ``pl_module.log`` (Lightning's loggers, at
  ``log_every_n_steps``) as ``teacher/momentum`` and ``teacher/preserve_prob``.

With several optimisers stepping in one batch (manual optimisation) the teacher is updated
once for that batch.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Union

from torch import nn

try:
    import lightning.pytorch as pl
except ImportError as error:  # the extra is optional
    raise ImportError(
        "stsmooth.integrations.lightning needs PyTorch Lightning: pip install 'stsmooth[lightning]'"
    ) from error

from stsmooth.core.teacher import Teacher

#: a fixed value or a schedule (a function of the optimiser step, e.g. from ``stsmooth.core.schedules``)
Value = Union[float, Callable[[int], float]]


def _as_schedule(name: str, value: Value) -> Callable[[int], float]:
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value <= 1:
        raise ValueError(f"{name}={value!r} is invalid; use a float in [0, 1] or a schedule step -> float")
    return lambda step: float(value)


class TeacherCallback(pl.Callback):
    """Keeps a smoothed teacher (TMA/EMA, SE, STS; EMAN BN) of ``pl_module.<attribute>``.

    Paper 000 Eq. 3 (STS: each unit kept with probability p, else EMA-updated with momentum
    m); paper 003 Eq. 9 for the teacher's BatchNorm statistics (``norm="eman"``).

    Args:
        attribute: name of the student network on the LightningModule, e.g. ``"student"`` or
            a dotted path ``"model.backbone"``; it must be an ``nn.Module``.
        momentum: m, a float in [0, 1] or a function of the step (``stsmooth.core.schedules``).
        preserve_prob: p, a float in [0, 1] or a function of the step; 0 is TMA, and with
            ``momentum=0`` SE.
        granularity: ``"tensor"``, ``"layer"`` (paper 000's default), ``"channel"`` or ``"neuron"``.
        norm: the teacher's BatchNorm: ``"eman"``, ``"batch"``, ``"copy"`` or ``"own"``.
        seed: seed of the draws; ``None`` picks one (rank 0's under DDP). A resumed fit uses the
            checkpoint's.
        nonfinite: ``"raise"``, ``"skip"`` or ``"ignore"``: what a non-finite student value does
            (see :class:`stsmooth.Teacher`).
        name: the LightningModule attribute the teacher is set as, and the prefix of its logs.
        log: log m and p through ``pl_module.log``.

    Attributes:
        teacher: the :class:`stsmooth.Teacher` (``None`` before the first fit starts).
    """

    def __init__(
        self,
        attribute: str = "student",
        momentum: Value = 0.99,
        preserve_prob: Value = 0.0,
        granularity: str = "layer",
        norm: str = "eman",
        seed: int | None = None,
        nonfinite: str = "raise",
        name: str = "teacher",
        log: bool = True,
    ) -> None:
        for key, value in (("attribute", attribute), ("name", name)):
            if not isinstance(value, str) or not value or not all(p.isidentifier() for p in value.split(".")):
                raise ValueError(f"TeacherCallback({key}={value!r}): use an attribute name such as 'student'")
        if "." in name:
            raise ValueError(f"TeacherCallback(name={name!r}): use a plain attribute name such as 'teacher'")
        self.attribute, self.name, self.log = attribute, name, bool(log)
        self.momentum = _as_schedule("momentum", momentum)
        self.preserve_prob = _as_schedule("preserve_prob", preserve_prob)
        self.options = {"granularity": granularity, "norm": norm, "seed": seed, "nonfinite": nonfinite}
        self.teacher: Teacher | None = None
        self._student_ref: Any = None
        self._pending: dict | None = None
        self._stepped = False
        self._hooks: list = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(attribute=self.attribute, name=self.name)

    def student(self, pl_module: nn.Module) -> nn.Module:
        """``pl_module.<attribute>``, checked to be an ``nn.Module``."""
        obj: Any = pl_module
        for part in self.attribute.split("."):
            if not hasattr(obj, part):
                modules = ", ".join(n for n, _ in pl_module.named_children()) or "none"
                raise ValueError(
                    f"TeacherCallback(attribute={self.attribute!r}): {type(pl_module).__name__} has no attribute "
                    f"{part!r}; its submodules are: {modules}"
                )
            obj = getattr(obj, part)
        if not isinstance(obj, nn.Module):
            raise ValueError(
                f"TeacherCallback(attribute={self.attribute!r}): {type(pl_module).__name__}.{self.attribute} is a "
                f"{type(obj).__name__}, not an nn.Module; name the student network"
            )
        return obj

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        student = self.student(pl_module)
        if self.name in pl_module._modules or self.name in pl_module._parameters:
            what = "submodule" if self.name in pl_module._modules else "parameter"
            raise ValueError(
                f"TeacherCallback(name={self.name!r}): {type(pl_module).__name__}.{self.name} is a registered "
                f"{what}; pick another name"
            )
        # a second fit of the same student continues its teacher; a new student gets a new one
        if self.teacher is None or self._student_ref() is not student:
            self.teacher = Teacher(
                student, momentum=self.momentum(0), preserve_prob=self.preserve_prob(0), **self.options
            )
            self._student_ref = weakref.ref(student)
        if self._pending is not None:  # the checkpoint was read before the teacher existed
            self.teacher.load_state_dict(self._pending)
            self._pending = None
        setattr(pl_module, self.name, self.teacher)
        self._remove_hooks()
        self._hooks = [opt.register_step_post_hook(self._after_optimizer_step) for opt in trainer.optimizers]
        self._stepped = False

    def _after_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # a step with no gradient at all (training_step returned None) changed nothing
        if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
            self._stepped = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._stepped:
            return
        self._stepped = False
        step = trainer.global_step - 1
        m, p = float(self.momentum(step)), float(self.preserve_prob(step))
        self.teacher.update(self.student(pl_module), momentum=m, preserve_prob=p)
        if self.log:
            pl_module.log(f"{self.name}/momentum", m, on_step=True, on_epoch=False, batch_size=1)
            pl_module.log(f"{self.name}/preserve_prob", p, on_step=True, on_epoch=False, batch_size=1)

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()

    def state_dict(self) -> dict[str, Any]:
        """The teacher's :meth:`~stsmooth.Teacher.state_dict` (weights, update count, seed)."""
        if self.teacher is not None:
            return {"teacher": self.teacher.state_dict()}
        return {"teacher": self._pending} if self._pending is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; before fit start it is kept until the teacher is built."""
        state = state_dict.get("teacher")
        if state is None:
            return
        if self.teacher is not None:
            self.teacher.load_state_dict(state)
        else:
            self._pending = state
