"""Experiment logs (log=mlflow, log=wandb) against the real libraries in local/offline mode.

The logged values are read back through MLflow's client and from W&B's offline run file and
compared with the run folder's metrics.csv and with the schedules re-derived from the config.
"""

import csv
import json
import struct
import sys
from pathlib import Path

import pytest

from stsmooth.training import checkpoint, config, loggers, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.warmup_epochs=1",
        "eval.every_epochs=2", "eval.probe_size=32", "export=false", "optim.epochs=2",
        "teacher.momentum_schedule=cosine", "teacher.momentum=0.9"]


def tiny(out, *extra):
    return config.load(ROOT / "src/stsmooth/recipes/byol_digits.yaml", TINY + [f"out={out}", *extra])


def csv_rows(out):
    with open(Path(out) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def expected_m(cfg):
    """m of the last step of each epoch (steps 2 and 5), from the config's schedule."""
    m, _ = train.teacher_schedules(cfg.teacher, 3, 6)
    return [m(2), m(5)]


def test_parse_names_the_allowed_logs():
    assert loggers.parse("tensorboard, mlflow") == ["tensorboard", "mlflow"]
    assert loggers.parse("none") == [] and loggers.parse("wandb,wandb") == ["wandb"]
    with pytest.raises(ValueError, match=r"'mlfow' is not one of tensorboard, mlflow, wandb, none.*'mlflow'"):
        loggers.parse("tensorboard,mlfow")
    with pytest.raises(ValueError, match=r"log='wandbb'"):
        config.load(overrides=["log=wandbb"])


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_missing_extra_names_the_install_line(tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=rf"log={name} needs {name}: pip install 'stsmooth\[{name}\]'"):
        loggers.build(name, tmp_path, {}, "p", None)


@pytest.mark.slow
def test_mlflow_sqlite_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # a SQLite store puts its artifacts in ./mlruns
    out = tmp_path / "run"
    # first part: crash after epoch 1 (the run is marked FAILED), then resume to the end
    real_save = checkpoint.save

    def crash_after_epoch_1(state, path):
        real_save(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train.ckpt, "save", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny(out, "log=mlflow", "log_project=digits"))
    monkeypatch.setattr(train.ckpt, "save", real_save)
    client = MlflowClient(uri)
    run_id = (out / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).info.status == "FAILED"
    cfg = tiny(out, "log=mlflow", "log_project=digits", "resume=true")
    train.run(cfg)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "digits"
    assert run.data.params["teacher.momentum"] == "0.9" and run.data.params["optim.batch_size"] == "32"
    assert run.data.params["method"] == "byol" and run.data.params["resume"] == "False"  # the first part's
    rows = csv_rows(out)
    assert [int(r["step"]) for r in rows] == [3, 6]

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

    assert history("train/m") == [(3, pytest.approx(expected_m(cfg)[0])), (6, pytest.approx(expected_m(cfg)[1]))]
    assert history("train/m") == [(3, float(rows[0]["m"])), (6, float(rows[1]["m"]))]
    assert history("train/p") == [(3, float(rows[0]["p"])), (6, float(rows[1]["p"]))]
    assert history("train/loss") == [(3, float(rows[0]["loss"])), (6, float(rows[1]["loss"]))]
    assert history("teacher/knn_top1") == [(6, float(rows[1]["teacher_knn_top1"]))]  # evaluated at epoch 2 only
    assert history("epoch") == [(3, 1.0), (6, 2.0)]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"curves.png", "results.json", "config.yaml"} <= names
    local = client.download_artifacts(run_id, "curves.png", str(tmp_path))
    assert Path(local).read_bytes() == (out / "curves.png").read_bytes()


def wandb_records(path):
    """Records of a W&B offline run file: a 7-byte header, then LevelDB-log framed protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow
def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    cfg = tiny(out, "log=wandb", "log_project=digits")
    train.run(cfg)
    import wandb

    wandb.teardown()  # as at process exit: W&B's service flushes the offline run file then

    run_id = (out / "wandb_run_id").read_text().strip()
    (run_dir,) = (out / "wandb").glob(f"offline-run-*-{run_id}")
    records = list(wandb_records(run_dir / f"run-{run_id}.wandb"))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "digits" and run.display_name == "run"
    conf = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert conf["teacher"]["momentum"] == 0.9 and conf["optim"]["batch_size"] == 32
    history = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    rows = csv_rows(out)
    assert [h["_step"] for h in history] == [3, 6]
    assert [h["train/m"] for h in history] == [float(r["m"]) for r in rows] == pytest.approx(expected_m(cfg))
    assert [h["train/p"] for h in history] == [float(r["p"]) for r in rows]
    assert [h["train/loss"] for h in history] == [float(r["loss"]) for r in rows]
    assert "teacher/knn_top1" not in history[0] and history[1]["teacher/knn_top1"] == float(rows[1]["teacher_knn_top1"])
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"curves.png", "results.json", "config.yaml"} <= saved
    assert (run_dir / "files/curves.png").read_bytes() == (out / "curves.png").read_bytes()
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0
