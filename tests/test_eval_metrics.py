"""Ranking metrics: hand-computed examples and agreement with a plain per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ktup.evaluation.metrics import METRICS, hit_matrix, summarise, topk_metrics
from ktup.evaluation.topk import merge_topk, tie_keys, topk_chunk


def reference_metrics(ranked: list[int], gold: set[int], k: int) -> dict[str, float]:
    """Straightforward per-user definitions (docs/PROTOCOLS.md), one user at a time."""
    top = ranked[:k]
    rel = [1 if i in gold else 0 for i in top]
    hits = sum(rel)
    g = len(gold)
    recall = hits / g
    precision = hits / k
    dcg = sum(r / math.log2(pos + 2) for pos, r in enumerate(rel))
    idcg = sum(1 / math.log2(pos + 2) for pos in range(min(g, k)))
    first = next((pos + 1 for pos, r in enumerate(rel) if r), None)
    mrr = 1 / first if first else 0.0
    ap = sum(sum(rel[: pos + 1]) / (pos + 1) for pos, r in enumerate(rel) if r) / min(g, k)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    own = sum(1 / math.log2(pos + 2) for pos in range(hits))
    return {"recall": recall, "precision": precision, "ndcg": dcg / idcg, "mrr": mrr, "hit": float(hits > 0),
            "map": ap, "f1": f1, "ndcg_ktup": dcg / own if hits else 0.0}


def test_hand_computed_example():
    # user 0: gold {1, 5, 9}; top-4 = [1, 2, 5, 3] → hits at ranks 1 and 3
    # user 1: gold {7};       top-4 = [0, 2, 4, 7] → hit at rank 4
    topk = torch.tensor([[1, 2, 5, 3], [0, 2, 4, 7]])
    indptr = np.array([0, 3, 4])
    indices = np.array([1, 5, 9, 7])
    m = {k: v.numpy() for k, v in topk_metrics(topk, indptr, indices, [0, 1], ks=(2, 4), n_items=10).items()}
    l2, l3, l4, l5 = (math.log2(x) for x in (2, 3, 4, 5))
    # K = 4, user 0
    assert m["recall@4"][0] == pytest.approx(2 / 3)
    assert m["precision@4"][0] == pytest.approx(2 / 4)
    assert m["hit@4"][0] == 1.0
    assert m["mrr@4"][0] == pytest.approx(1.0)
    assert m["ndcg@4"][0] == pytest.approx((1 / l2 + 1 / l4) / (1 / l2 + 1 / l3 + 1 / l4))
    assert m["map@4"][0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    p, r = 0.5, 2 / 3
    assert m["f1@4"][0] == pytest.approx(2 * p * r / (p + r))
    assert m["ndcg_ktup@4"][0] == pytest.approx((1 / l2 + 1 / l4) / (1 / l2 + 1 / l3))
    # K = 4, user 1 (one gold item, found at rank 4)
    assert m["recall@4"][1] == 1.0
    assert m["mrr@4"][1] == pytest.approx(1 / 4)
    assert m["ndcg@4"][1] == pytest.approx((1 / l5) / 1.0)
    assert m["map@4"][1] == pytest.approx(1 / 4)
    assert m["ndcg_ktup@4"][1] == pytest.approx(1 / l5)
    # K = 2: ideal uses min(|gold|, K) = 2 ranks for user 0
    assert m["ndcg@2"][0] == pytest.approx((1 / l2) / (1 / l2 + 1 / l3))
    assert m["map@2"][0] == pytest.approx(1 / 2)
    assert m["hit@2"][1] == 0.0 and m["mrr@2"][1] == 0.0 and m["f1@2"][1] == 0.0 and m["ndcg_ktup@2"][1] == 0.0
    assert sorted({k.split("@")[0] for k in m}) == sorted(METRICS)


def test_users_without_gold_are_nan_and_left_out_of_the_mean():
    topk = torch.tensor([[0, 1], [0, 1]])
    m = topk_metrics(topk, np.array([0, 1, 1]), np.array([0]), [0, 1], ks=(2,), n_items=3)
    per_user = {k: v.numpy() for k, v in m.items()}
    assert np.isnan(per_user["recall@2"][1])
    assert summarise(per_user)["recall@2"] == 1.0


def test_hit_matrix_ignores_padding_and_other_users_gold():
    topk = torch.tensor([[3, -1], [3, 0]])
    hits = hit_matrix(topk, torch.tensor([1]), torch.tensor([3]), n_items=4)
    assert hits.tolist() == [[False, False], [True, False]]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_metrics_agree_with_reference(data):
    n_items = data.draw(st.integers(3, 30))
    n_users = data.draw(st.integers(1, 8))
    kmax = data.draw(st.integers(1, n_items))
    ks = sorted(set(data.draw(st.lists(st.integers(1, kmax), min_size=1, max_size=3))))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    ranked = [list(rng.permutation(n_items)[:kmax]) for _ in range(n_users)]
    golds = [set(rng.choice(n_items, size=rng.integers(1, n_items + 1), replace=False).tolist()) for _ in range(n_users)]
    indptr = np.concatenate([[0], np.cumsum([len(g) for g in golds])])
    indices = np.concatenate([sorted(g) for g in golds]).astype(np.int64)
    got = topk_metrics(torch.tensor(ranked), indptr, indices, np.arange(n_users), ks, n_items)
    for u in range(n_users):
        for k in ks:
            ref = reference_metrics(ranked[u], golds[u], k)
            for name in METRICS:
                assert got[f"{name}@{k}"][u].item() == pytest.approx(ref[name], abs=1e-12), (name, k, u)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_topk_chunks_match_a_full_stable_sort(data):
    n = data.draw(st.integers(1, 40))
    b = data.draw(st.integers(1, 5))
    k = data.draw(st.integers(1, n))
    chunk = data.draw(st.integers(1, n))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    scores = torch.tensor(rng.integers(0, 4, size=(b, n)), dtype=torch.float32)   # many ties
    scores[torch.tensor(rng.random((b, n)) < 0.2)] = float("-inf")
    users = torch.tensor(rng.integers(0, 1000, size=b))
    seed = data.draw(st.integers(0, 5))
    parts = [topk_chunk(scores[:, c0:c0 + chunk], k, offset=c0, users=users, seed=seed) for c0 in range(0, n, chunk)]
    vals, ids = merge_topk(parts, k, users=users, seed=seed)
    keys = tie_keys(users, torch.arange(n), seed)                          # (b, n) the seeded tie order
    for row in range(b):
        expect = sorted(range(n), key=lambda i: (-scores[row, i].item(), keys[row, i].item(), i))[:k]
        assert ids[row].tolist() == expect
