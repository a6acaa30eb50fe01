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
