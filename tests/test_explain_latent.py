"""The latent-class evidence step (ktup.explain.latent): recovery, determinism, batching, rules."""

from __future__ import annotations

import time

import numpy as np
import pytest

from _explain_fakes import FakeModel, tiny_dataset
from ktup.errors import KtupError
from ktup.explain import Recommender
from ktup.explain.evidence import EvidenceIndex
from ktup.explain.latent import LatentRelations, choose_relations


def planted(n_items=60, n_rel=3, n_val=6, n_users=40, per_user=10, seed=0):
    """Items with one value per relation; each user draws every interaction through one planted
    relation and one favourite value (trivially separable). Returns index, CSR history, users'
    relations and one held-out (user, item) per user."""
    rng = np.random.default_rng(seed)
    vals = rng.integers(0, n_val, size=(n_items, n_rel))
    vals[:n_val * n_rel] = np.arange(n_val * n_rel)[:, None] % n_val       # every value used
    kg = np.array([[i, r, n_items + r * n_val + vals[i, r]] for i in range(n_items) for r in range(n_rel)])
    idx = EvidenceIndex(kg, np.arange(n_items), n_items + n_rel * n_val)
    rel = rng.integers(0, n_rel, size=n_users)
    fav = np.array([vals[rng.integers(n_items), r] for r in rel])
    hist, held = [], []
    for u in range(n_users):
        pool = np.flatnonzero(vals[:, rel[u]] == fav[u])
        pick = rng.choice(pool, size=min(per_user + 1, pool.size), replace=False)
        held.append(pick[0])
        hist.append(np.sort(pick[1:]))
    indptr = np.concatenate([[0], np.cumsum([h.size for h in hist])])
    return idx, indptr, np.concatenate(hist), rel, np.array(held)


def test_recovers_planted_relation_on_a_separable_case():
    idx, ptr, items, rel, held = planted()
    users = np.arange(rel.size)
    for method in ("cvb0", "em"):
        post = LatentRelations(idx, ptr, items, method=method).posterior(users, held)
        assert np.allclose(post.sum(1), 1.0)
        assert (post.argmax(1) == rel).mean() >= 0.95, method


def test_deterministic_and_lazy_fit_equals_batch_fit():
    idx, ptr, items, rel, held = planted(seed=3)
    users = np.arange(rel.size)
    full = LatentRelations(idx, ptr, items).fit().posterior(users, held)
    again = LatentRelations(idx, ptr, items).posterior(users, held)
    assert np.array_equal(full, again)                                   # same input, same bits
    lazy = LatentRelations(idx, ptr, items, max_entries=7)                # tiny chunks, users on demand
    first = lazy.posterior(users[:5], held[:5])
    assert lazy.fitted.sum() == 5
    np.testing.assert_allclose(first, full[:5], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lazy.posterior(users, held), full, rtol=1e-12, atol=1e-15)


def test_batch_equals_pairs_and_no_loop_per_pair():
    idx, ptr, items, rel, held = planted(seed=5)
    lat = LatentRelations(idx, ptr, items).fit()
    rng = np.random.default_rng(0)
    u = rng.integers(0, rel.size, size=200_000)
    i = rng.integers(0, 60, size=200_000)
    t = time.process_time()
    batch = lat.posterior(u, i)
    assert time.process_time() - t < 5.0                                  # vectorised: ~0.3 s; a loop: minutes
    one = np.stack([lat.posterior(u[j:j + 1], i[j:j + 1])[0] for j in range(20)])
    np.testing.assert_allclose(batch[:20], one)


def test_item_without_facts_and_user_without_history():
    idx, ptr, items, rel, held = planted()
    ptr = np.concatenate([ptr, [ptr[-1]]])                                # one more user, no history
    lat = LatentRelations(idx, ptr, items)
    p = lat.posterior(np.array([rel.size]), np.array([0]))
    assert np.allclose(p.sum(), 1.0) and (p > 0).all()                   # prior only, still a distribution
    with pytest.raises(ValueError, match="method"):
        LatentRelations(idx, ptr, items, method="gibbs")
    with pytest.raises(ValueError, match="nb_split"):
        LatentRelations(idx, ptr, items, nb_split="odd")


def test_neighbour_split_variants_agree_with_one_neighbour_per_relation():
    idx, ptr, items, rel, held = planted(seed=2)
    users = np.arange(rel.size)
    a = LatentRelations(idx, ptr, items, nb_split="posterior").posterior(users, held)
    b = LatentRelations(idx, ptr, items, nb_split="even").posterior(users, held)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_choose_relations_rules():
    logw = np.log(np.array([[0.7, 0.2, 0.1]] * 4))
    sup = np.array([[0, 1.0, 0.5], [0, 1.0, 0.5], [0, 0, 0], [0, 0, 0]])
    has = np.array([[1, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]], dtype=bool)
    post = np.array([[0.9, 0.02, 0.08]] * 4)
    k, rule = choose_relations(logw, sup, has, post)
    # path-only: relation 0 has the largest posterior but no path; among paths 2 beats 1
    assert k.tolist()[:2] == [2, 2] and rule.tolist()[:2] == ["latent-class"] * 2
    assert (k[2], rule[2]) == (1, "facts")                               # top has no fact: heaviest with facts
    assert (k[3], rule[3]) == (0, "model")
    k, rule = choose_relations(logw, sup, has)                            # without a posterior: weight × support
    assert k[0] == 1 and rule[0] == "kg-path"


def test_recommender_uses_latent_class_step():
    d = tiny_dataset(entity_names=True)
    rec = Recommender(FakeModel(top=1), d)
    x = rec.explain("8", "10")                                            # user 8 has C: zemeckis and hanks
    n = x["named"]
    assert n["chosen_by"] == "latent-class" and x["evidence"]["paths_found"]
    assert 0 < n["posterior"] <= 1 and n["relation"] in ("film.film.directed_by", "film.film.actor")
    assert "latent-class fit of your history" in x["text"]
    assert rec.latent.fitted.sum() == 1                                   # only the asked user was fitted
    with pytest.raises(KtupError, match="evidence_step"):
        Recommender(FakeModel(), d, evidence_step="magic")


def _tiny_ktup(d, seed=0):
    import torch

    from ktup.models import KTUP

    torch.manual_seed(seed)
    return KTUP(d.n_users, d.n_items, d.n_entities, d.n_relations, d.item_entity, 8, induction="hard",
                norm="l2", inference="expected").eval()


def test_history_influence_is_the_gradient_dot_product():
    import torch

    from ktup.explain.influence import history_influence

    d = tiny_dataset()
    m = _tiny_ktup(d)
    hist = np.array([0, 1, 3])
    got = history_influence(m, 0, 2, hist)

    def grad(i):
        m.zero_grad()
        with torch.enable_grad():
            m.score_pairs(torch.tensor([0]), torch.tensor([i])).sum().backward()
        return m.user.weight.grad[0].clone()

    want = np.array([float(grad(2) @ grad(j)) for j in hist])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    assert history_influence(FakeModel(), 0, 2, hist) is None            # no user table: caller's order


def test_explanation_cites_history_by_influence():
    from ktup.explain.explanation import MAX_CITED
    from ktup.explain.influence import history_influence

    d = tiny_dataset(entity_names=True)
    m = _tiny_ktup(d, seed=1)
    rec = Recommender(m, d, evidence_step="kg-support")
    checked = 0
    for user, item in (("7", "30"), ("8", "10"), ("7", "20")):
        x = rec.explain(user, item)
        ev = x["evidence"]
        if not ev["paths_found"]:
            continue
        assert ev["cited_by"] == "influence"
        u, ids = d.users.index(user), {t: j for j, t in enumerate(d.items.tokens)}
        for ent in ev["entities"]:
            shown = np.array([ids[h["item"]] for h in ent["history_items"]], dtype=np.int64)
            v = history_influence(m, u, ids[item], shown)
            assert (v > 0).all() and (np.diff(v) <= 0).all()               # only items raising the score, best first
        assert ("hold up this score most" in x["text"]) or ("none of them raises this score" in x["text"])
        shown = {ids[h["item"]] for e in ev["entities"] for h in e["history_items"]} | \
            {ids[h["item"]] for h in ev["direct_history"]}
        assert len(shown) <= MAX_CITED
        hist = rec.history(u)
        pair, on_paths = rec.evidence.path_items(np.array([u]), np.array([ids[item]]),
                                                 np.array([d.relations.index(x["named"]["relation"])]),
                                                 rec._seen_indptr, rec._seen_items)
        v = history_influence(m, u, ids[item], on_paths)
        best = set(on_paths[np.argsort(-v, kind="stable")][(np.sort(-v) < 0)][:MAX_CITED].tolist())
        assert shown == best or len(ev["entities"]) >= 3                    # the strongest, unless lines ran out
        assert hist.size
        checked += 1
    assert checked >= 2
