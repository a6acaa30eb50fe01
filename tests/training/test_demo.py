"""The demo (training/demo.py): BYOL on digits under no smoothing, TMA, SE and STS."""

from stsmooth.training import demo


def test_demo_runs_the_four_rules_and_prints_the_table(tmp_path, capsys):
    tiny = ["optim.steps_per_epoch=2", "optim.batch_size=32", "byol.projector_hidden=16", "byol.predictor_hidden=16"]
    records = demo.main(seeds=[0, 1], out=str(tmp_path), epochs=2, overrides=tiny)
    assert [r["rule"] for r in records] == ["none"] * 2 + ["TMA"] * 2 + ["SE"] * 2 + ["STS"] * 2
    none, tma, se, sts = (records[i] for i in (0, 2, 4, 6))
    assert (none["m"], none["p"], se["m"], sts["p"]) == (0.0, 0.0, 0.0, 0.7)
    assert se["p"] == tma["m"] == 0.9
    printed = capsys.readouterr().out
    assert "| random init |" in printed and "± " in printed
    assert (tmp_path / "demo.png").is_file() and (tmp_path / "table.md").is_file()
    # no smoothing: the teacher is the student after every step
    assert none["results"]["teacher"] == none["results"]["student"]
