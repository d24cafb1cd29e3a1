"""Full-ranking evaluation: masking, chunking, determinism, protocol output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ktup.data.dataset import IdMap, Interactions, KGDataset
from ktup.errors import KtupError
from ktup.evaluation import evaluate_recommendation, get_protocol
from ktup.evaluation.metrics import METRICS

from test_eval_metrics import reference_metrics


def make_dataset(n_users: int, n_items: int, train, valid, test) -> KGDataset:
    def inter(pairs):
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return Interactions(pairs[:, 0].copy(), pairs[:, 1].copy(), n_users, n_items)

    return KGDataset(
        name="tiny", users=IdMap(range(n_users), "user"), items=IdMap(range(n_items), "item"),
        entities=IdMap(range(n_items), "entity"), relations=IdMap(["r0"], "relation"),
        item_entity=np.arange(n_items, dtype=np.int64), train=inter(train), valid=inter(valid), test=inter(test),
        kg_train=np.zeros((0, 3), dtype=np.int64),
    )


class MatrixScorer(torch.nn.Module):
    """A fake model: a fixed (users × items) score table; records the calls it gets."""

    def __init__(self, scores):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(scores, dtype=torch.float32))
        self.calls = []
        self.modes = []

    def score_all_items(self, users, items=None):
        self.calls.append((len(users), None if items is None else len(items)))
        self.modes.append((self.training, torch.is_grad_enabled()))
        s = self.table[users]
        return s if items is None else s[:, items]


def test_masks_seen_items_and_uses_gold_of_the_split():
    # user 0 trained on item 0 (the top-scored); valid gold is item 2; test gold item 1
    ds = make_dataset(2, 4, train=[(0, 0), (1, 3)], valid=[(0, 2), (1, 1)], test=[(0, 1)])
    scores = [[9.0, 8.0, 7.0, 1.0], [0.0, 1.0, 2.0, 9.0]]
    model = MatrixScorer(scores)
    r = evaluate_recommendation(model, ds, "valid", ks=(1,))
    # user 0: item 0 masked → ranking [1, 2, ...] → no hit at 1; user 1: item 3 masked → [2, 1] no hit
    assert r.summary["hit@1"] == 0.0
    r2 = evaluate_recommendation(model, ds, "valid", ks=(2,))
    assert r2.per_user["mrr@2"].tolist() == [0.5, 0.5]
    # test: train + valid masked → user 0 ranks [1, 3] → hit at 1; user 1 has no test item
    t = evaluate_recommendation(model, ds, "test", ks=(1,))
    assert t.n_users == 1 and t.users.tolist() == [0] and t.summary["hit@1"] == 1.0
    assert t.n_excluded == 1


def test_model_is_put_in_eval_mode_without_grad_and_restored():
    ds = make_dataset(3, 5, train=[(0, 0)], valid=[(0, 1), (1, 2), (2, 3)], test=[])
    model = MatrixScorer(np.random.default_rng(0).random((3, 5)))
    model.train()
    evaluate_recommendation(model, ds, "valid", ks=(2,))
    assert model.modes and all(m == (False, False) for m in model.modes)
    assert model.training
    assert model.table.grad is None


def test_function_scorer_and_bad_outputs():
    ds = make_dataset(2, 3, train=[], valid=[(0, 1), (1, 2)], test=[])
    r = evaluate_recommendation(lambda u, i: torch.zeros(len(u), len(i)), ds, ks=(1,))
    # all ties → each user's item with the lowest seeded tie key wins (not the lowest id)
    from ktup.evaluation.topk import tie_keys

    first = tie_keys(torch.tensor([0, 1]), torch.arange(3), 0).argmin(1).tolist()
    assert r.summary["hit@1"] == np.mean([first[0] == 1, first[1] == 2])
    with pytest.raises(KtupError, match="NaN"):
        evaluate_recommendation(lambda u, i: torch.full((len(u), len(i)), float("nan")), ds)
    with pytest.raises(KtupError, match="shape"):
        evaluate_recommendation(lambda u, i: torch.zeros(len(u), 1), ds)
    with pytest.raises(KtupError, match="protocol"):
        evaluate_recommendation(lambda u, i: torch.zeros(len(u), len(i)), ds, protocol="nope")


def _random_case(seed: int, n_users=12, n_items=30):
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.3]
    rng.shuffle(pairs)
    n = len(pairs)
    train, valid, test = pairs[: n // 2], pairs[n // 2: 3 * n // 4], pairs[3 * n // 4:]
    ds = make_dataset(n_users, n_items, train, valid, test)
    scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)   # ties on purpose
    return ds, scores


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["valid", "test"]))
def test_agrees_with_per_user_reference(seed, split):
    ds, scores = _random_case(seed)
    ks = (1, 5, 10)
    r = evaluate_recommendation(MatrixScorer(scores), ds, split, ks=ks)
    gold_ptr, gold_idx = ds.split(split).csr()
    seen = set(zip(ds.seen_before(split).users.tolist(), ds.seen_before(split).items.tolist()))
    expected_users = [u for u in range(ds.n_users) if gold_ptr[u + 1] > gold_ptr[u]]
    assert r.users.tolist() == expected_users and r.n_users == len(expected_users)
    from ktup.evaluation.topk import tie_keys

    keys = tie_keys(torch.arange(ds.n_users), torch.arange(ds.n_items), 0).numpy()   # the seeded tie order
    for row, u in enumerate(expected_users):
        gold = set(gold_idx[gold_ptr[u]:gold_ptr[u + 1]].tolist())
        ranked = sorted((i for i in range(ds.n_items) if (u, i) not in seen), key=lambda i: (-scores[u, i], keys[u, i], i))
        for k in ks:
            ref = reference_metrics(ranked, gold, k)
            for name in METRICS:
                assert r.per_user[f"{name}@{k}"][row] == pytest.approx(ref[name], abs=1e-12), (name, k, u)
    for key, value in r.summary.items():
        assert value == pytest.approx(float(np.mean(r.per_user[key])))


def test_chunked_equals_unchunked_exactly_and_is_deterministic():
    ds, scores = _random_case(7, n_users=40, n_items=300)
    model = MatrixScorer(scores)
    full = evaluate_recommendation(model, ds, "test", ks=(5, 20))
    model.eval_bytes_per_pair = 4 * 1024  # forces tiny budgets → many user batches and item chunks
    chunked = evaluate_recommendation(model, ds, "test", ks=(5, 20), user_batch_size=7, memory_budget_mb=1)
    assert any(c[1] is not None and c[1] < 300 for c in model.calls)
    assert full.summary == chunked.summary
    for key in full.per_user:
        np.testing.assert_array_equal(full.per_user[key], chunked.per_user[key])
    again = evaluate_recommendation(model, ds, "test", ks=(5, 20), user_batch_size=7, memory_budget_mb=1)
    assert again.summary == chunked.summary


def test_users_argument_and_fewer_items_than_k():
    ds = make_dataset(3, 4, train=[(0, 0), (0, 1), (0, 2)], valid=[(0, 3), (1, 0), (2, 1)], test=[])
    scores = np.array([[4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]], dtype=np.float32)
    r = evaluate_recommendation(MatrixScorer(scores), ds, "valid", ks=(10,), users=[0, 1])
    assert r.users.tolist() == [0, 1]
    # user 0: only item 3 unmasked, it is gold: recall 1, precision 1/10, ndcg 1
    assert r.per_user["recall@10"][0] == 1.0 and r.per_user["precision@10"][0] == pytest.approx(0.1)
    assert r.per_user["ndcg@10"][0] == pytest.approx(1.0)
    # user 1: gold item 0 scored lowest → rank 4
    assert r.per_user["mrr@10"][1] == pytest.approx(0.25)
    assert r.per_user["ndcg@10"][1] == pytest.approx(1 / math.log2(5))
    # nobody with held-out items: nothing averaged, nothing crashes
    empty = make_dataset(2, 3, train=[(0, 0)], valid=[], test=[])
    e = evaluate_recommendation(MatrixScorer(np.zeros((2, 3))), empty, "valid", ks=(2,))
    assert e.n_users == 0 and e.n_excluded == 2 and math.isnan(e.summary["recall@2"])


def test_result_reporting_names_protocol_and_split():
    ds, scores = _random_case(3)
    r = evaluate_recommendation(MatrixScorer(scores), ds, "valid", ks=(10, 20), protocol="paper")
    d = r.to_dict()
    assert d["protocol"]["name"] == "paper" and d["split"] == "valid" and d["users"] == r.n_users
    assert set(d["metrics"]) == {f"{m}@{k}" for m in METRICS for k in (10, 20)}
    table = r.format_table()
    assert "paper" in table and "valid" in table and "ndcg_ktup" in table and "recall" in table
    p = get_protocol("paper").parameters()
    assert p["data"]["split_ratios"] == [0.7, 0.1, 0.2] and p["data"]["k_core"] == 5
    assert get_protocol("recbole").parameters()["data"]["split_ratios"] == [0.8, 0.1, 0.1]


def test_duplicate_held_out_interactions_count_once():
    ds = make_dataset(1, 4, train=[], valid=[(0, 1), (0, 1), (0, 2)], test=[])
    r = evaluate_recommendation(MatrixScorer([[0.0, 3.0, 1.0, 2.0]]), ds, "valid", ks=(1,))
    assert r.per_user["recall@1"][0] == pytest.approx(0.5)   # gold {1, 2}: one of two found
