"""Experiment logs besides ``metrics.csv``: TensorBoard, MLflow, Weights & Biases.

``log=`` names them, comma-separated: ``tensorboard`` (the default; skipped when tensorboard is
not installed), ``mlflow``, ``wandb``, ``none``; e.g. ``log=tensorboard,mlflow``. Each gets the
resolved config, one row of metrics per epoch (loss, lr, m, p, evaluations, at the row's global
step), and at the end ``curves.png``, ``results.json`` and ``config.yaml`` as files of the run.

- MLflow: the tracking store is ``$MLFLOW_TRACKING_URI`` or MLflow's default (a local
  store in the working directory), e.g. ``MLFLOW_TRACKING_URI=sqlite:///mlflow.db`` or
  ``file:./mlruns``; experiment ``log_project``; run named after the run folder.
- Weights & Biases: project ``log_project``, files under the run folder; ``WANDB_MODE=offline``
  logs with no network (``wandb sync`` uploads later).

A resumed run (``resume=true``) continues the same MLflow / W&B run: its id is kept in the
run folder (``mlflow_run_id``, ``wandb_run_id``).
"""

from __future__ import annotations

import difflib
import math
import time
from pathlib import Path
from typing import Any

LOGS = ("tensorboard", "mlflow", "wandb", "none")
ARTIFACTS = ("curves.png", "results.json", "config.yaml")


def parse(spec: str) -> list[str]:
    """``"tensorboard,mlflow"`` -> ``["tensorboard", "mlflow"]``; ``"none"`` -> ``[]``.

    Raises:
        ValueError: a name that is not one of :data:`LOGS`, with the nearest one.
    """
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    for name in names:
        if name not in LOGS:
            near = difflib.get_close_matches(name, LOGS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ValueError(f"log={spec!r}: {name!r} is not one of {', '.join(LOGS)} (comma-separated){hint}")
    return [n for n in dict.fromkeys(names) if n != "none"]


def tag(key: str) -> str:
    """Metric name in the logs: teacher/…, student/…, smoothness/…, train/…."""
    for prefix in ("teacher_", "student_"):
        if key.startswith(prefix):
            return prefix[:-1] + "/" + key[len(prefix):]
    if key.endswith("_msd"):
        return "smoothness/" + key
    return "train/" + key


def scalars(row: dict) -> dict[str, float]:
    """The row's finite numbers under their tags (``step`` is the x axis, not a metric)."""
    out = {}
    for key, value in row.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out["epoch" if key == "epoch" else tag(key)] = float(value)
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"teacher": {"momentum": 0.99}}`` -> ``{"teacher.momentum": 0.99}`` (the CLI's keys)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _need(package: str, extra: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ImportError(f"log={extra} needs {package}: pip install 'stsmooth[{extra}]'") from error


class Logger:
    """One experiment log: ``log`` a metrics row, then ``close`` once."""

    def log(self, row: dict) -> None:
        raise NotImplementedError

    def close(self, root: Path, failed: bool) -> None:
        raise NotImplementedError


class TensorBoard(Logger):
    def __init__(self, root: Path, resumed_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(root), purge_step=resumed_step)

    def log(self, row: dict) -> None:
        for key, value in scalars(row).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self, root: Path, failed: bool) -> None:
        self.writer.close()


class MLflow(Logger):
    def __init__(self, root: Path, config: dict, project: str, resumed_step: int | None):
        _need("mlflow", "mlflow")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        id_file = root / "mlflow_run_id"
        if resumed_step is not None and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return  # parameters are immutable in MLflow and were logged by the first part
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
        run = self.client.create_run(experiment_id, run_name=root.name,
                                     tags={"stsmooth.run_folder": str(root.resolve())})
        self.run_id = run.info.run_id
        id_file.write_text(self.run_id + "\n")
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["step"])) for k, v in scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, root: Path, failed: bool) -> None:
        for name in ARTIFACTS:
            if (root / name).is_file():
                self.client.log_artifact(self.run_id, str(root / name))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Wandb(Logger):
    def __init__(self, root: Path, config: dict, project: str, resumed_step: int | None):
        wandb = _need("wandb", "wandb")
        id_file = root / "wandb_run_id"
        resume = resumed_step is not None and id_file.is_file()
        run_id = id_file.read_text().strip() if resume else None
        self.run = wandb.init(project=project, name=root.name, id=run_id, resume="allow" if resume else None,
                              dir=str(root), config=config, settings=wandb.Settings(console="off"))
        id_file.write_text(self.run.id + "\n")

    def log(self, row: dict) -> None:
        self.run.log(scalars(row), step=int(row["step"]))

    def close(self, root: Path, failed: bool) -> None:
        for name in ARTIFACTS:
            if (root / name).is_file():
                self.run.save(str(root / name), base_path=str(root), policy="now")
        self.run.finish(exit_code=1 if failed else 0)


def build(spec: str, root: Path, config: dict, project: str, resumed_step: int | None) -> list[Logger]:
    """The loggers ``spec`` names (see :func:`parse`), started for the run folder ``root``.

    Args:
        spec: ``log=`` value, e.g. ``"tensorboard,mlflow"``.
        root: the run folder.
        config: the resolved configuration as a nested dict.
        project: MLflow experiment / W&B project name.
        resumed_step: global step of the checkpoint a resumed run starts from; None when fresh.

    Raises:
        ImportError: mlflow or wandb named but not installed (names the pip line).
    """
    loggers: list[Logger] = []
    for name in parse(spec):
        if name == "tensorboard":
            try:
                loggers.append(TensorBoard(root, resumed_step))
            except ImportError:  # the default: tensorboard is optional
                pass
        elif name == "mlflow":
            loggers.append(MLflow(root, config, project, resumed_step))
        elif name == "wandb":
            loggers.append(Wandb(root, config, project, resumed_step))
    return loggers
