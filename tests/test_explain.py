"""Explanations: relation names, the KG evidence index, and what explain() says (fakes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ktup.errors import KtupError
from ktup.explain import EvidenceIndex, Recommender, relation_name

from _explain_fakes import FakeModel, tiny_dataset


@pytest.mark.parametrize("token, name", [
    ("film.film.directed_by", "directed by"),
    ("film.director.film", "director of"),
    ("film.film.actor", "has actor"),
    ("film.actor.film", "acts in"),
    ("film.film_genre.films_in_this_genre", "genre of"),
    ("film.film.genre", "has genre"),
    ("film.production_company.films", "company of"),
    ("film.film.written_by", "written by"),
    ("film.content_rating.film", "rating of"),
    ("film.film.sequel", "has sequel"),
    ("film.film.prequel", "has prequel"),
    ("/film/film/directed_by", "directed by"),
    ("people.person.profession", "has profession"),
    ("directed_by_director", "directed by"),
    ("wrote_by_writter", "written by"),
    ("belong_to_category", "in category"),
    ("has_genre", "has genre"),
    ("r3", "r3"),
])
def test_relation_name(token, name):
    assert relation_name(token) == name


def test_relation_labels_keep_direction_and_are_distinct():
    """Both directions of a fact read differently, and no two relations of a KG share a label."""
    from ktup.explain.names import relation_labels

    ml100k = ["film.actor.film", "film.film.actor", "film.director.film", "film.film.directed_by",
              "film.film.genre", "film.film_genre.films_in_this_genre", "film.film.sequel", "film.film.prequel",
              "film.writer.film", "film.film.written_by", "film.producer.film", "film.film.produced_by"]
    labels = relation_labels(ml100k)
    assert len(set(labels)) == len(labels)
    assert labels[0] == "acts in" and labels[1] == "has actor"
    clash = relation_labels(["music.artist.genre", "film.film.genre", "x.y.genre"])
    assert len(set(clash)) == 3 and clash[0] == "has genre (artist)" and clash[1] == "has genre (film)"
    same = relation_labels(["a.b.c", "a.b.c "])                  # a last resort: the token itself
    assert len(set(same)) == 2


@pytest.mark.parametrize("raw, shown", [
    ("Truth About Cats & Dogs, The (1996)", "The Truth About Cats & Dogs (1996)"),
    ("Birdcage, The (1996)", "The Birdcage (1996)"),
    ("Jour se lève, Le (1939)", "Le Jour se lève (1939)"),
    ("American President, An (1995)", "An American President (1995)"),
    ("Hello, Dolly! (1969)", "Hello, Dolly! (1969)"),
    ("Star Wars (1977)", "Star Wars (1977)"),
    ("Birdcage, The", "The Birdcage"),
])
def test_titles_are_unflipped(raw, shown):
    from ktup.explain.names import display_title

    assert display_title(raw) == shown


@pytest.mark.parametrize("token, ids, shown", [
    ("Category:French_films", False, "French films"),
    ("Elizabeth_(film)", False, "Elizabeth (film)"),
    ("Monty_Python's_Life_of_Brian", False, "Monty Python's Life of Brian"),
    ("m.0jwpcm", False, "an entity"),
    ("/m/0jwpcm", False, "an entity"),
    ("m.0jwpcm", True, "m.0jwpcm"),
])
def test_entity_display(token, ids, shown):
    from ktup.explain.names import entity_display

    assert entity_display(token, ids=ids) == shown


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
    assert x["top"]["relation_name"] == "directed by"
    assert x["named"]["relation"] == "film.film.directed_by" and x["named"]["chosen_by"] == "latent-class"
    assert not x["seen"]
    ev = x["evidence"]
    assert ev["paths_found"] and ev["item_entity"] == "fC"
    assert [e["entity"] for e in ev["entities"]] == ["zemeckis"]
    assert ev["entities"][0]["name"] == "Robert Zemeckis"
    assert [h["title"] for h in ev["entities"][0]["history_items"]] == ["Forrest Gump", "Back to the Future"]
    assert "Evidence (directed by): Robert Zemeckis — also linked to Forrest Gump and Back to the Future, from your history" in x["text"]
    # weights are a distribution sorted by logit; strength compares with the runner-up's score
    w = [p["weight"] for p in x["preferences"]]
    assert abs(sum(w) - 1) < 1e-9 and w == sorted(w, reverse=True)
    st = x["strength"]
    assert st["margin"] == pytest.approx(x["top"]["score"] - x["preferences"][1]["score"])
    assert st["runner_up"] == x["preferences"][1]["relation_name"]
    json.dumps(x)                                                    # plain data


def test_explain_without_names_describes_entity_by_linked_item():
    d = tiny_dataset()
    rec = Recommender(FakeModel(top=3), d, evidence_step="kg-support")   # sequel relation (the model's weight)
    x = rec.explain("7", "30")
    ev = x["evidence"]
    assert ev["entities"][0]["entity"] == "fB"
    assert ev["entities"][0]["name"].startswith("Back to the Future")
    assert [h["item"] for h in ev["direct_history"]] == ["20"]
    assert ev["paths_found"]


def test_explain_history_respects_seen_splits():
    d = tiny_dataset()
    rec = Recommender(FakeModel(top=2), d, seen_splits=("train",), evidence_step="kg-support")
    x = rec.explain("7", "30")                                       # actor hanks: A in train
    assert [h["title"] for h in x["evidence"]["entities"][0]["history_items"]] == ["Forrest Gump"]
    x = rec.explain("9", "30")                                       # user 9 has no history
    assert not x["evidence"]["paths_found"]
    assert x["named"]["chosen_by"] == "model"                        # no path at all: the model's own choice
    assert "no item in your history" in x["evidence"]["note"]
    assert "Tom Hanks" not in x["text"] and 'Its "has actor" links: hanks (as in Forrest Gump).' in x["text"]
    assert x["evidence"]["entities"][0]["examples"] == [{"item": "10", "title": "Forrest Gump"}]


def test_explain_never_names_a_relation_without_facts_when_one_has_them():
    """The model's top preference ("director of") has no fact about film A: the explanation
    names a relation the item has facts of (one with a KG path to the history when there is
    one) and says honestly that the model's own choice links to nothing."""
    d = tiny_dataset()
    x = Recommender(FakeModel(top=1), d).explain("8", "10")          # user 8 has C: shares zemeckis, hanks
    assert x["top"]["relation"] == "film.director.film"             # the model's own choice, reported as such
    assert x["named"]["relation"] in ("film.film.directed_by", "film.film.actor")
    assert x["named"]["chosen_by"] == "latent-class" and x["evidence"]["paths_found"]
    assert x["evidence"]["relation"] == x["named"]["relation"]
    assert "The model's own top preference is \"director of\"" in x["text"]
    assert "links it to nothing in your history" in x["text"]
    assert "holds no" not in x["text"]
    x = Recommender(FakeModel(top=1), d, seen_splits=("train",)).explain("9", "10")   # no history: no path
    assert x["named"]["chosen_by"] == "facts" and x["named"]["item_has_facts"]
    assert x["named"]["relation"] in ("film.film.directed_by", "film.film.actor")
    assert "has no fact about this item" in x["text"]


def test_explain_unlinked_item_is_honest():
    d = tiny_dataset()
    x = Recommender(FakeModel(top=0), d).explain("8", "50")          # E has no KG entity
    assert x["evidence"]["item_entity"] is None and not x["evidence"]["paths_found"]
    assert x["named"]["chosen_by"] == "model"
    assert "no KG entity" in x["text"]


def test_explain_says_a_seen_item_is_seen():
    d = tiny_dataset()
    rec = Recommender(FakeModel(top=0), d)
    x = rec.explain("7", "10")                                       # A is in user 7's train history
    assert x["seen"] and "You already have this item" in x["text"]
    x = rec.explain("7", "30")
    assert not x["seen"] and "already have" not in x["text"]
    x = Recommender(FakeModel(top=0), d, seen_splits=("train",)).explain("7", "40")   # D only in valid
    assert not x["seen"]


def test_strength_is_calibrated_and_explained_in_one_line():
    from ktup.explain.explanation import strength_label

    assert strength_label(0.05, 0.045, 24) == "weak"                 # ≈ uniform 1/24
    assert strength_label(0.10, 0.05, 24) == "moderate"              # 2.4× uniform, 2× runner-up
    assert strength_label(0.20, 0.05, 24) == "strong"                # 4.8× uniform, 4× runner-up
    assert strength_label(0.20, 0.15, 24) == "weak"                  # far above uniform, a toss-up with the runner-up
    assert strength_label(1.0, None, 1) == "only preference"
    x = Recommender(FakeModel(top=0), tiny_dataset()).explain("7", "30")
    line = [ln for ln in x["text"].splitlines() if ln.startswith("Strength:")]
    assert len(line) == 1
    st, top, ru = x["strength"], x["top"], x["preferences"][1]
    assert st["lift"] == pytest.approx(top["weight"] * 4) and st["uniform"] == pytest.approx(0.25)
    assert f"{st['lift']:.1f}× uniform (1/4 = 0.25)" in line[0]
    assert f"{st['ratio_to_runner_up']:.1f}× the runner-up" in line[0] and f"({ru['weight']:.2f})" in line[0]
    assert "strong needs" in line[0]


def test_explanation_text_never_contradicts_its_numbers():
    """No "margin … so X alone would score it higher" claims: the text quotes only weights,
    whose order matches the words (top ≥ runner-up), whatever the per-relation scores are."""
    d = tiny_dataset()
    for seed in range(6):
        m = FakeModel(seed=seed)
        rec = Recommender(m, d)
        for u in ("7", "8", "9"):
            for i in ("10", "20", "30", "40", "50"):
                x = rec.explain(u, i)
                assert "alone would score" not in x["text"] and "margin" not in x["text"]
                assert x["top"]["weight"] >= x["preferences"][1]["weight"]
                assert x["strength"]["ratio_to_runner_up"] >= 1.0


def test_explain_titles_and_mids_read_as_words(tmp_path):
    """Flipped titles are unflipped; a Freebase mid reads "an entity" unless ids are asked for."""
    d = tiny_dataset()
    d.item_info["title"] = ["Forrest Gump", "Back to the Future", "Birdcage, The (1996)", "Titanic", "Unlinked Film"]
    d.entities = type(d.entities)(["fA", "fB", "fC", "fD", "zemeckis", "m.0cameron", "m.0hanks"], "entity")
    rec = Recommender(FakeModel(top=2), d, seen_splits=("train",))
    x = rec.explain("9", "30")                                       # actor hanks (a mid), no history
    assert x["title"] == "The Birdcage (1996)" and "Birdcage, The" not in x["text"]
    assert "m.0hanks" not in x["text"] and "an entity (as in Forrest Gump)" in x["text"]
    rec.show_ids = True
    assert "m.0hanks" in rec.explain("9", "30")["text"]


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
        xs = [rec._explain_ids(u, i) for u, i in pairs]
        named = np.array([d.relations.index(x["named"]["relation"]) for x in xs])
        got = rec.evidence.paths_exist(users, items, named, rec._seen_indptr, rec._seen_items)
        want = [x["evidence"]["paths_found"] for x in xs]
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


def test_relation_support_batch_equals_one_pair_and_paths():
    """The batched KG support (benchmarks) equals the per-pair one (explanations), and a
    relation has support exactly when paths_exist says it links the item to the history."""
    from ktup.data.synthetic import generate
    from ktup.explain.evidence import RelationSupport

    d = generate(n_users=30, n_items=25, n_interactions=400, n_relations=3, values_per_relation=5, seed=3)
    kg = np.concatenate([d.kg_all, [[0, 0, 1], [2, 1, 3]]])          # add direct item-item links
    idx = EvidenceIndex(kg, d.item_entity, d.n_entities)
    ptr, hist = d.train.csr()
    us, its = np.repeat(np.arange(d.n_users), d.n_items), np.tile(np.arange(d.n_items), d.n_users)
    batch = RelationSupport(idx, ptr, hist).support(us, its)
    one = np.stack([idx.support(i, hist[ptr[u]:ptr[u + 1]]) for u, i in zip(us, its)])
    np.testing.assert_allclose(batch, one)
    for r in range(d.n_relations):
        paths = idx.paths_exist(us, its, np.full(len(us), r), ptr, hist)
        assert ((batch[:, r] > 0) == paths).all()
    assert (batch > 0).any() and not (batch > 0).all()
