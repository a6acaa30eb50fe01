"""Evaluating a checkpoint: key=value arguments through the one (OmegaConf) parser, one-line errors."""

import pytest

from stsmooth.training.checkpoint_eval import evaluate_checkpoint, split_arguments


def test_arguments_split_into_config_overrides_and_protocol_options():
    dotted, options = split_arguments(["data.root=/x", "k=10", "shots=[1,2]", "which=student", "lr=1e-3",
                                       "normalize=false", "data.download=true"])
    assert dotted == ["data.root=/x", "data.download=true"]
    assert options == {"k": 10, "shots": [1, 2], "which": "student", "lr": 0.001, "normalize": False}
    assert split_arguments([]) == ([], {})


@pytest.mark.parametrize("arguments, message", [
    (["k"], "'k' is not of the form key=value"),
    (["=3"], "'=3' is not of the form key=value"),
    (["shots=[1,"], "do not parse"),
])
def test_bad_arguments_are_one_line_errors(arguments, message):
    with pytest.raises(ValueError, match=message) as info:
        split_arguments(arguments)
    assert "\n" not in str(info.value)


def test_unknown_protocol_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="'knearest' is not one of knn, linear, finetune, retrieval, lowshot"):
        evaluate_checkpoint("knearest", tmp_path / "missing.pt")


def test_a_folder_is_streamed_in_batches_not_decoded_into_memory(tmp_path, monkeypatch):
    # issue 14 item 5: today the whole training folder was decoded (FolderSet.to_imageset) before kNN
    import numpy as np
    from PIL import Image

    from stsmooth.data import FolderSet
    from stsmooth.evaluate.runner import run_eval
    from stsmooth.training import config, run_data, train
    from stsmooth.training.checkpoint_eval import restore
    from stsmooth.training.monitor import Features

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "imgs" / split / c).mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / c / f"{i}.png")
    cfg = config.load("byol_digits", ["progress=false", "model.options.width=8", "byol.projector_hidden=32",
                                      "byol.projector_out=16", "byol.predictor_hidden=32", "optim.batch_size=8",
                                      "optim.steps_per_epoch=1", "optim.epochs=1", "optim.warmup_epochs=0",
                                      "eval.probe_size=8", "export=false", "data.name=folder",
                                      f"data.root={tmp_path / 'imgs'}", "data.test_split=val", "data.num_workers=0",
                                      f"out={tmp_path / 'run'}"])
    train.run(cfg)
    ckpt = tmp_path / "run/checkpoints/last.pt"
    run = restore(ckpt, ["data.num_workers=0"])
    sets = run_data.load(run.cfg)
    in_memory = run_eval("knn", Features(run.teacher.module), sets.bank.to_imageset(), sets.test.to_imageset(),
                         device=run.device, transform=run.eval_transform, k=5)

    def decoded_whole(self):
        raise AssertionError(f"{self.root} was decoded into memory")

    monkeypatch.setattr(FolderSet, "to_imageset", decoded_whole)
    which, streamed = evaluate_checkpoint("knn", ckpt, ["k=5", "feature_batch_size=5", "data.num_workers=0"])
    assert which == "teacher"
    assert streamed["top1"] == pytest.approx(in_memory["top1"]) and streamed["top5"] == pytest.approx(in_memory["top5"])
