"""Filtered, tie-aware link prediction against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ktup.data.dataset import IdMap, Interactions, KGDataset
from ktup.errors import KtupError
from ktup.evaluation import evaluate_link_prediction


def make_kg(n_ent: int, n_rel: int, train, valid, test) -> KGDataset:
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), 1, 1)
    arr = lambda x: np.asarray(x, dtype=np.int64).reshape(-1, 3)  # noqa: E731
    return KGDataset(
        name="kg", users=IdMap(["u"], "user"), items=IdMap(["i"], "item"), entities=IdMap(range(n_ent), "entity"),
        relations=IdMap(range(n_rel), "relation"), item_entity=np.zeros(1, np.int64), train=empty, valid=empty,
        test=empty, kg_train=arr(train), kg_valid=arr(valid), kg_test=arr(test),
    )


class TableKG(torch.nn.Module):
    """Fake KG model: score(h, r, t) = table[h, r, t] (integer-valued, so ties are common)."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def score_tails(self, h, r, entities=None):
        s = self.table[h, r]                         # (B, E)
        return s if entities is None else s[:, entities]

    def score_heads(self, r, t, entities=None):
        s = self.table[:, r, t].T                    # (B, E)
        return s if entities is None else s[:, entities]


def brute_force_ranks(table, triples, known, filtered=True):
    known = set(map(tuple, known.tolist()))
    heads, tails = [], []
    n_ent = table.shape[0]
    for h, r, t in triples.tolist():
        for side, ranks in (("tail", tails), ("head", heads)):
            true = table[h, r, t]
            gt = eq = 0
            for e in range(n_ent):
                cand = (h, r, e) if side == "tail" else (e, r, t)
                if cand == (h, r, t) or (filtered and cand in known):
                    continue
                s = table[cand]
                gt += s > true
                eq += s == true
            ranks.append(1 + gt + eq / 2)
    return np.array(heads), np.array(tails)


def _random_kg(seed, n_ent=9, n_rel=3):
    rng = np.random.default_rng(seed)
    all_t = np.array([(h, r, t) for h in range(n_ent) for r in range(n_rel) for t in range(n_ent) if rng.random() < 0.15])
    rng.shuffle(all_t)
    n = len(all_t)
    table = rng.integers(0, 4, size=(n_ent, n_rel, n_ent)).astype(np.float64)
    return make_kg(n_ent, n_rel, all_t[: n // 2], all_t[n // 2: 3 * n // 4], all_t[3 * n // 4:]), table


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.integers(1, 7))
def test_ranks_agree_with_brute_force(seed, filtered, batch_size):
    ds, table = _random_kg(seed)
    res = evaluate_link_prediction(TableKG(table), ds, "test", filtered=filtered, batch_size=batch_size, also_raw=True)
    heads, tails = brute_force_ranks(table, ds.kg_test, ds.kg_all, filtered=filtered)
    np.testing.assert_allclose(res.head_ranks, heads)
    np.testing.assert_allclose(res.tail_ranks, tails)
    both = np.concatenate([heads, tails])
    assert res.summary["mr"] == pytest.approx(both.mean())
    assert res.summary["mrr"] == pytest.approx((1 / both).mean())
    for k in (1, 3, 10):
        assert res.summary[f"hits@{k}"] == pytest.approx((both <= k).mean())
    raw_h, raw_t = brute_force_ranks(table, ds.kg_test, ds.kg_all, filtered=False)
    assert res.raw["head"]["mr"] == pytest.approx(raw_h.mean())
    assert res.raw["tail"]["mr"] == pytest.approx(raw_t.mean())


def test_constant_scorer_gets_the_middle_rank():
    n_ent = 11
    ds = make_kg(n_ent, 1, train=[], valid=[], test=[(0, 0, 1), (2, 0, 3)])
    res = evaluate_link_prediction(TableKG(np.zeros((n_ent, 1, n_ent))), ds, "test", filtered=True)
    # 10 competitors all tied → realistic rank 1 + 10/2 = 6 (the middle of 1..11)
    assert res.head_ranks.tolist() == [6.0, 6.0] and res.tail_ranks.tolist() == [6.0, 6.0]
    assert res.summary["mr"] == 6.0 and res.summary["hits@1"] == 0.0


def test_filter_removes_other_true_answers():
    # (0, 0, 1) and (0, 0, 2) are both true; the model prefers 2 over 1
    table = np.zeros((4, 1, 4))
    table[0, 0, 2] = 5.0
    table[0, 0, 1] = 4.0
    ds = make_kg(4, 1, train=[(0, 0, 2)], valid=[], test=[(0, 0, 1)])
    filt = evaluate_link_prediction(TableKG(table), ds, "test", filtered=True, also_raw=True)
    assert filt.tail_ranks.tolist() == [1.0]
    assert filt.raw["tail"]["mr"] == 2.0


def test_subsampling_is_deterministic_and_entity_chunks_give_the_same_ranks():
    ds, table = _random_kg(5, n_ent=30, n_rel=2)
    model = TableKG(table)
    a = evaluate_link_prediction(model, ds, "test", max_triples=5)
    b = evaluate_link_prediction(model, ds, "test", max_triples=5)
    assert a.n_triples == 5 and np.array_equal(a.triples, b.triples) and a.summary == b.summary
    full = evaluate_link_prediction(model, ds, "test")
    model.eval_bytes_per_pair = 2**20   # 1 MiB per pair → entity chunks of one
    chunked = evaluate_link_prediction(model, ds, "test", memory_budget_mb=1)
    np.testing.assert_array_equal(full.head_ranks, chunked.head_ranks)
    np.testing.assert_array_equal(full.tail_ranks, chunked.tail_ranks)
    d = full.to_dict()
    assert d["setting"] == "filtered" and {"mr", "mrr", "hits@1", "hits@3", "hits@10", "head", "tail"} <= set(d)
    assert "filtered" in full.format_table()


def test_rejects_models_without_kg_scores():
    ds, _ = _random_kg(1)
    with pytest.raises(KtupError):
        evaluate_link_prediction(object(), ds)
