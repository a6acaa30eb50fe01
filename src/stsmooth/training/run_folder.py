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
    {out}/resumes.txt            one line per resume that changed allowed keys (eval cadence, epochs, ...)
    {out}/.lock                  {"host", "pid", "job"} of the process using the folder, removed at its end

Only the main rank writes; other ranks get a folder object that does nothing.
A second process started on a folder whose lock names a live process stops
with one line; a lock left by a dead process of this host (kill -9, node
reboot) or by an earlier run of the same Slurm job (requeue) is taken over
with a warning. Temporary files a killed writer left behind are removed then.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import sys
import time
from pathlib import Path

from stsmooth.errors import StsmoothError
from stsmooth.training import config as config_mod
from stsmooth.training import loggers

#: temporary files of atomic writers (checkpoint.save, MetricsCSV, write_json) a kill -9 can leave
ORPHANS = ("checkpoints/.*.tmp", ".*.tmp", "*.csv.tmp", "*.json.tmp")


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
            text = path.read_text()
            if text and not text.endswith("\n"):
                # a kill while a row was appended: its line is torn (the run logs it again on resume)
                text = text[: text.rfind("\n") + 1]
                print(f"stsmooth: dropped the torn last line of {path}", file=sys.stderr)
            reader = csv.DictReader(text.splitlines())
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
        self.lock = self.root / ".lock"
        self._locked = False
        if active:
            self.root.mkdir(parents=True, exist_ok=True)
            self._acquire()
            for pattern in ORPHANS:
                for orphan in self.root.glob(pattern):
                    orphan.unlink(missing_ok=True)
            self.metrics = MetricsCSV(self.root / "metrics.csv")

    def _acquire(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID")}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_lock(self.lock)
                if owner is None:  # being written right now, or torn by a kill while it was
                    time.sleep(0.2)
                    owner = _read_lock(self.lock) or {}
                if owner.get("host") == me["host"] and owner.get("pid") == me["pid"]:
                    self._locked = True  # this process already holds it (setup then run, or a sweep)
                    return
                stale = (not owner or (owner.get("host") == me["host"] and not _alive(owner.get("pid")))
                         or (me["job"] is not None and owner.get("job") == me["job"]))
                if not stale:
                    raise StsmoothError(
                        f"run folder {str(self.root)!r} is in use by pid {owner.get('pid')} on host "
                        f"{owner.get('host')!r} (lock {str(self.lock)!r}); wait for it, use another out=, or delete "
                        f"the lock if that process is gone")
                print(f"stsmooth: warning: taking over the stale lock of pid {owner.get('pid')} on host "
                      f"{owner.get('host')!r} in {self.root}", file=sys.stderr)
                self.lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**me, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}, f)
            self._locked = True
            return
        raise StsmoothError(f"could not take the lock {str(self.lock)!r} of run folder {str(self.root)!r}")

    def release(self) -> None:
        """Removes the folder's lock (at the run's end, however it ends)."""
        if self._locked:
            owner = _read_lock(self.lock)
            if owner is not None and owner.get("pid") == os.getpid():
                self.lock.unlink(missing_ok=True)
            self._locked = False

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

    def record_resume(self, line: str) -> None:
        """Appends one line to ``resumes.txt`` (what a resume changed)."""
        if self.active:
            with open(self.root / "resumes.txt", "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    def close(self, failed: bool = False) -> None:
        """Ends the experiment logs, which take ``curves.png``/``results.json`` if written by now; frees the lock."""
        try:
            for logger in self._loggers:
                logger.close(self.root, failed)
            self._loggers = []
        finally:
            self.release()


def _read_lock(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _alive(pid) -> bool:
    """Whether process ``pid`` of this host exists (a zombie counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
