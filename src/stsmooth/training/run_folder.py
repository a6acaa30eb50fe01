"""The run folder: what a training run leaves on disk.

    {out}/config.yaml            resolved configuration
    {out}/metrics.csv            one row per epoch (loss, lr, m, p, evaluations)
    {out}/events.*               TensorBoard events (when tensorboard is installed)
    (and MLflow / W&B runs with ``log=mlflow`` / ``log=wandb``: see stsmooth.training.loggers)
    {out}/curves.png             training curves (see stsmooth.training.curves)
    {out}/checkpoints/last.pt    last checkpoint, written atomically
    {out}/results.json           final evaluation
    {out}/teacher.safetensors    the teacher's backbone (000 §4.1 "we dump the teacher")
    {out}/student.safetensors    the student's backbone

Only the main rank writes; other ranks get a folder object that does nothing.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from stsmooth.training import config as config_mod
from stsmooth.training import loggers


class MetricsCSV:
    """A CSV whose columns grow as new metrics appear (the file is rewritten then).

    Rows are small and few (one per epoch), so rewriting is cheap and keeps
    the file readable by any CSV reader.
    """

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self.columns: list[str] = []
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = [dict(r) for r in reader]

    def truncate(self, step: int) -> None:
        """Drops rows logged after ``step`` (a resumed run logs them again)."""
        self.rows = [r for r in self.rows if r.get("step") not in (None, "") and int(float(r["step"])) <= step]
        self._rewrite()

    def append(self, row: dict) -> None:
        row = {k: _cell(v) for k, v in row.items()}
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


class RunFolder:
    """Paths and writers of one run folder.

    Args:
        out: folder path (created).
        active: False on non-main ranks: every method then does nothing.
    """

    def __init__(self, out: str | os.PathLike, active: bool = True):
        self.root = Path(out)
        self.active = active
        self.checkpoint = self.root / "checkpoints" / "last.pt"
        self.metrics = None
        self._loggers: list[loggers.Logger] = []
        self._log_setup = ("tensorboard", {}, "stsmooth")
        if active:
            self.root.mkdir(parents=True, exist_ok=True)
            self.metrics = MetricsCSV(self.root / "metrics.csv")

    def save_config(self, cfg: config_mod.RunConfig) -> None:
        if self.active:
            config_mod.save(cfg, self.root / "config.yaml")
            self._log_setup = (cfg.log, config_mod.to_dict(cfg), cfg.log_project)

    def start(self, resumed_step: int | None) -> None:
        """Prepares logging: keeps earlier rows on resume, starts afresh otherwise."""
        if not self.active:
            return
        self.metrics.truncate(resumed_step if resumed_step is not None else -1)
        spec, config, project = self._log_setup
        self._loggers = loggers.build(spec, self.root, config, project, resumed_step)

    def log(self, row: dict) -> None:
        """One metrics row (must hold ``step``); also sent to the experiment logs (``log=``)."""
        if not self.active:
            return
        self.metrics.append(row)
        for logger in self._loggers:
            logger.log(row)

    def write_json(self, name: str, data: dict) -> Path | None:
        if not self.active:
            return None
        path = self.root / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def close(self, failed: bool = False) -> None:
        """Ends the experiment logs, which take ``curves.png``/``results.json`` if written by now."""
        for logger in self._loggers:
            logger.close(self.root, failed)
        self._loggers = []
