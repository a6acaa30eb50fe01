import math

import pytest
import torch

from stsmooth.evaluate.retrieval import retrieval


def unit(deg):
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# Ranked from the query at 0°: labels 0, 1, 0, 1, 0, then (far away) 0.
DB = torch.tensor([unit(0), unit(10), unit(20), unit(30), unit(40), unit(170)])
DB_LABELS = torch.tensor([0, 1, 0, 1, 0, 0])


def test_map_recall_by_hand():
    queries = torch.tensor([unit(-1), unit(-1), unit(-1)])
    res = retrieval(DB, DB_LABELS, queries, torch.tensor([0, 1, 2]), topk=5)
    # label 0: rel = 1 0 1 0 1 -> AP = (1 + 2/3 + 3/5) / 3, recall 3/4, precision 3/5
    # label 1: rel = 0 1 0 1 0 -> AP = (1/2 + 2/4) / 2,     recall 2/2, precision 2/5
    # label 2: nothing relevant in the database -> AP 0, recall 0, precision 0
    ap0, ap1 = (1 + 2 / 3 + 3 / 5) / 3, 0.5
    assert res["mAP"] == pytest.approx(100 * (ap0 + ap1) / 3, rel=1e-5)
    assert res["recall"] == pytest.approx(100 * (0.75 + 1.0) / 3, rel=1e-5)
    assert res["precision"] == pytest.approx(100 * (0.6 + 0.4) / 3, rel=1e-5)
    assert res["k"] == 5


def test_topk_is_clipped_and_chunking_is_exact():
    g = torch.Generator().manual_seed(0)
    db, q = torch.randn(200, 8, generator=g), torch.randn(30, 8, generator=g)
    y_db, y_q = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (30,), generator=g)
    whole = retrieval(db, y_db, q, y_q, topk=50, chunk_size=30)
    for cs in (1, 7):
        part = retrieval(db, y_db, q, y_q, topk=50, chunk_size=cs)
        assert part["mAP"] == pytest.approx(whole["mAP"], rel=1e-6)
        assert part["recall"] == pytest.approx(whole["recall"], rel=1e-6)
    everything = retrieval(db, y_db, q, y_q, topk=10_000)
    assert everything["k"] == 200 and everything["recall"] == pytest.approx(100.0)


def test_perfect_features_give_full_map():
    db = torch.eye(3).repeat_interleave(4, dim=0)  # 4 items per class, one direction per class
    res = retrieval(db, torch.arange(3).repeat_interleave(4), torch.eye(3), torch.arange(3), topk=4)
    assert res["mAP"] == pytest.approx(100.0) and res["recall"] == pytest.approx(100.0)


def test_bad_topk():
    with pytest.raises(ValueError, match="topk"):
        retrieval(DB, DB_LABELS, DB, DB_LABELS, topk=0)
