"""Explanations: relation names, the KG evidence index, and what explain() says (fakes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ktup.errors import KtupError
from ktup.explain import EvidenceIndex, Recommender, relation_name

from _explain_fakes import FakeModel, tiny_dataset


@pytest.mark.parametrize("token, name", [
    ("film.film.directed_by", "director"),
    ("film.director.film", "director"),
    ("film.film_genre.films_in_this_genre", "genre"),
    ("film.film.genre", "genre"),
    ("film.production_company.films", "production company"),
    ("film.film.written_by", "writer"),
    ("film.content_rating.film", "content rating"),
    ("film.film.sequel", "sequel"),
    ("/film/film/directed_by", "director"),
    ("has_genre", "has genre"),
    ("r3", "r3"),
])
def test_relation_name(token, name):
    assert relation_name(token) == name


def _index(d):
    return EvidenceIndex(d.kg_all, d.item_entity, d.n_entities)


def test_evidence_index_neighbours_both_directions():
    d = tiny_dataset()
    idx = _index(d)
    ent = {t: i for i, t in enumerate(d.entities.tokens)}
    assert idx.neighbours(2, 0).tolist() == [ent["zemeckis"]]        # C directed_by zemeckis (head side)
    assert idx.neighbours(2, 1).tolist() == [ent["zemeckis"]]        # zemeckis director.film C (tail side)
    assert idx.neighbours(0, 1).tolist() == []                       # no inverse triple for A
    assert idx.neighbours(2, 3).tolist() == [ent["fB"]]              # B sequel C, seen from C
    assert idx.neighbours(4, 0).tolist() == []                       # unlinked item
    owner, items = idx.items_reaching(0, np.array([ent["zemeckis"], ent["cameron"]]))
    assert sorted(zip(owner.tolist(), items.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3)]


def test_evidence_shared_entities_and_history():
    d = tiny_dataset()
    idx = _index(d)
    ent = {t: i for i, t in enumerate(d.entities.tokens)}
    shared = idx.shared(2, 0, history=np.array([0, 1, 3]))
    assert len(shared) == 1
    assert shared[0].entity == ent["zemeckis"]
    assert shared[0].history_items.tolist() == [0, 1]               # Forrest Gump, Back to the Future
    assert shared[0].n_items == 3
    # The explained item itself never counts as its own evidence.
    assert idx.shared(2, 0, history=np.array([2])) [0].history_items.tolist() == []
    assert idx.linked_history(np.array([ent["fB"]]), np.array([0, 1]), exclude=2).tolist() == [1]


def test_explain_director_path_names_entity_and_history():
    d = tiny_dataset(entity_names=True)
    rec = Recommender(FakeModel(top=0), d)
    x = rec.explain("7", "30")                                       # user 7 has A, B (train), D (valid)
    assert x["item"] == "30" and x["title"] == "Cast Away"
    assert x["top"]["relation"] == "film.film.directed_by"
    assert x["top"]["relation_name"] == "director"
    ev = x["evidence"]
    assert ev["paths_found"] and ev["item_entity"] == "fC"
    assert [e["entity"] for e in ev["entities"]] == ["zemeckis"]
    assert ev["entities"][0]["name"] == "Robert Zemeckis"
    assert [h["title"] for h in ev["entities"][0]["history_items"]] == ["Forrest Gump", "Back to the Future"]
    assert "Evidence (director): Robert Zemeckis — also linked to Forrest Gump and Back to the Future, from your history" in x["text"]
    # weights are a distribution sorted by logit; strength compares with the runner-up's score
    w = [p["weight"] for p in x["preferences"]]
    assert abs(sum(w) - 1) < 1e-9 and w == sorted(w, reverse=True)
    st = x["strength"]
    assert st["margin"] == pytest.approx(x["top"]["score"] - x["preferences"][1]["score"])
    assert st["runner_up"] == x["preferences"][1]["relation_name"]
    json.dumps(x)                                                    # plain data


def test_explain_without_names_describes_entity_by_linked_item():
    d = tiny_dataset()
    rec = Recommender(FakeModel(top=3), d)                           # sequel relation
    x = rec.explain("7", "30")
    ev = x["evidence"]
    assert ev["entities"][0]["entity"] == "fB"
    assert ev["entities"][0]["name"].startswith("Back to the Future")
    assert [h["item"] for h in ev["direct_history"]] == ["20"]
    assert ev["paths_found"]


def test_explain_history_respects_seen_splits():
    d = tiny_dataset()
    rec = Recommender(FakeModel(top=2), d, seen_splits=("train",))
    x = rec.explain("7", "30")                                       # actor hanks: A in train
    assert [h["title"] for h in x["evidence"]["entities"][0]["history_items"]] == ["Forrest Gump"]
    x = rec.explain("9", "30")                                       # user 9 has no history
    assert not x["evidence"]["paths_found"]
    assert "no item in the user's history" in x["evidence"]["note"]
    assert "Tom Hanks" not in x["text"] and "Its actor: hanks (as in Forrest Gump)." in x["text"]
    assert x["evidence"]["entities"][0]["examples"] == [{"item": "10", "title": "Forrest Gump"}]


def test_explain_no_fact_and_unlinked_item_are_honest():
    d = tiny_dataset()
    x = Recommender(FakeModel(top=1), d).explain("7", "10")          # A has no director.film triple
    assert not x["evidence"]["paths_found"] and x["evidence"]["entities"] == []
    assert "no director fact" in x["text"].lower()
    x = Recommender(FakeModel(top=0), d).explain("8", "50")          # E has no KG entity
    assert x["evidence"]["item_entity"] is None and not x["evidence"]["paths_found"]
    assert "no KG entity" in x["text"]


def test_explain_tup_and_bpr():
    d = tiny_dataset()
    m = FakeModel(relations=None)
    m.name = "tup"
    x = Recommender(m, d).explain("7", "30")
    assert x["evidence"] is None and x["top"]["relation"] is None
    assert x["top"]["relation_name"].startswith("preference ")
    assert "latent" in x["text"]
    b = FakeModel()
    b.name, b.explains = "bpr", False
    with pytest.raises(KtupError, match="explanations are unavailable for bpr: it has no preferences"):
        Recommender(b, d).explain("7", "30")


def test_explain_unknown_ids():
    rec = Recommender(FakeModel(), tiny_dataset())
    with pytest.raises(KtupError, match="unknown user 'nobody'"):
        rec.explain("nobody", "30")
    with pytest.raises(KtupError, match="unknown item 999"):
        rec.explain("7", 999)


def test_paths_exist_matches_explanations():
    d = tiny_dataset()
    seen = []
    for top in range(4):
        rec = Recommender(FakeModel(top=top), d)
        pairs = [(u, i) for u in range(d.n_users) for i in range(d.n_items)]
        users = np.array([p[0] for p in pairs])
        items = np.array([p[1] for p in pairs])
        got = rec.evidence.paths_exist(users, items, np.full(len(pairs), top), rec._seen_indptr, rec._seen_items)
        want = [rec._explain_ids(u, i)["evidence"]["paths_found"] for u, i in pairs]
        assert got.tolist() == want
        seen += want
    assert any(seen) and not all(seen)


def test_explain_real_ktup_with_expected_score():
    """A hard-trained KTUP scored by the expected distance: the explanation still names the
    argmax relation, says how the score was formed, and its score is the weighted mean of the
    per-relation scores it lists."""
    import torch

    from ktup.models import KTUP

    d = tiny_dataset()
    torch.manual_seed(0)
    m = KTUP(d.n_users, d.n_items, d.n_entities, d.n_relations, d.item_entity, 8, induction="hard",
             norm="l2", inference="expected").eval()
    x = Recommender(m, d).explain("7", "30")
    assert x["induction"] == "hard" and x["scoring"] == "expected"
    assert "hard induction, expected score" in x["text"]
    weighted = sum(p["weight"] * p["score"] for p in x["preferences"])
    assert x["score"] == pytest.approx(weighted, rel=1e-5, abs=1e-6)
    assert x["top"]["logit"] == max(p["logit"] for p in x["preferences"])
