"""Recommender.recommend / score on the tiny hand-built dataset with a fake model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.errors import KtupError
from ktup.explain import Recommender

from _explain_fakes import FakeModel, tiny_dataset


def _brute_force(model, d, user, seen):
    u = d.users.index(user)
    items = [i for i in range(d.n_items) if i not in seen]
    with torch.no_grad():
        s = model.score_pairs(torch.full((len(items),), u), torch.tensor(items)).numpy()
    order = np.argsort(-s, kind="stable")
    return [d.items.token(items[j]) for j in order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recommend_unseen_sorted_equals_brute_force(seed):
    d, m = tiny_dataset(), FakeModel(seed=seed)
    rec = Recommender(m, d)
    out = rec.recommend("7", k=2)                 # user 7 knows A, B (train), D (valid)
    assert [r["rank"] for r in out] == [1, 2]
    assert [r["item"] for r in out] == _brute_force(m, d, "7", {0, 1, 3})
    assert {r["item"] for r in out} == {"30", "50"}
    assert out[0]["score"] >= out[1]["score"]
    titles = dict(zip(d.items.tokens, d.item_info["title"]))
    assert all(r["title"] == titles[r["item"]] for r in out)
    full = rec.recommend("7", k=5, filter_seen=False)
    assert [r["item"] for r in full] == _brute_force(m, d, "7", set())
    assert [r["score"] for r in full] == pytest.approx(rec.score("7", [r["item"] for r in full]))


def test_recommend_many_users_keeps_order_and_handles_short_lists():
    rec = Recommender(FakeModel(), tiny_dataset())
    many = rec.recommend(["9", "7", 8], k=10)     # ints and strings both name original ids
    assert len(many) == 3
    assert len(many[0]) == 5                     # user 9 knows nothing: all items
    assert len(many[1]) == 2                     # only 2 unseen items left for user 7
    assert {r["item"] for r in many[2]} == {"10", "20", "40"}   # user 8 knows C, E
    assert rec.recommend("7", k=0) == []
    assert rec.recommend([], k=3) == []


def test_recommend_exclude_and_seen_splits():
    d = tiny_dataset()
    rec = Recommender(FakeModel(), d)
    assert "30" not in {r["item"] for r in rec.recommend("9", k=5, exclude=["30", 50])}
    assert [r["item"] for r in rec.recommend("9", k=5, exclude="50")] == [r["item"] for r in rec.recommend("9", k=5) if r["item"] != "50"]
    train_only = Recommender(FakeModel(), d, seen_splits=("train",))
    assert "40" in {r["item"] for r in train_only.recommend("7", k=5)}   # D was in valid


def test_recommend_explain_flag_attaches_explanations():
    rec = Recommender(FakeModel(top=0), tiny_dataset())
    out = rec.recommend("7", k=2, explain=True)
    assert all(r["explanation"]["item"] == r["item"] for r in out)


def test_unknown_ids_and_bad_arguments():
    rec = Recommender(FakeModel(), tiny_dataset())
    with pytest.raises(KtupError, match="unknown user '404'"):
        rec.recommend(["7", "404"])
    with pytest.raises(KtupError, match="unknown item 'nope'"):
        rec.recommend("7", exclude=["nope"])
    with pytest.raises(KtupError, match="unknown item"):
        rec.score("7", ["10", "x"])
    with pytest.raises(KtupError, match="k must be"):
        rec.recommend("7", k=-1)
    with pytest.raises(KtupError, match="seen_splits"):
        Recommender(FakeModel(), tiny_dataset(), seen_splits=("bogus",))


def test_batched_scoring_matches_single_batch():
    d, m = tiny_dataset(), FakeModel()
    rec = Recommender(m, d)
    rec._batch_size = lambda: 1                  # force one user per batch
    assert rec.recommend(["7", "8", "9"], k=3) == Recommender(m, d).recommend(["7", "8", "9"], k=3)


@pytest.mark.parametrize("name", ["ktup", "tup", "bpr"])
def test_real_models_rank_like_brute_force(name):
    from ktup.config import ModelConfig
    from ktup.models import build_model

    d = tiny_dataset()
    torch.manual_seed(0)
    m = build_model(ModelConfig(model=name, embedding_size=8), d)
    rec = Recommender(m, d)
    for user, seen in (("7", {0, 1, 3}), ("9", set())):
        out = rec.recommend(user, k=5)
        assert [r["item"] for r in out] == _brute_force(m, d, user, seen)
        assert [r["score"] for r in out] == pytest.approx(rec.score(user, [r["item"] for r in out]), abs=1e-4)
    if name == "bpr":
        with pytest.raises(KtupError, match="unavailable for bpr"):
            rec.explain("7", "30")
    else:
        x = rec.explain("7", "30")
        assert (x["evidence"] is None) == (name == "tup")
        assert x["score"] == pytest.approx(rec.score("7", "30")[0], abs=1e-5)
