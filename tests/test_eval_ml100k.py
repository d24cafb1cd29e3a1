"""ml-100k with RecBole's exact split: the evaluator against a plain per-user reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.config import DataConfig
from ktup.evaluation import evaluate_link_prediction, evaluate_recommendation
from ktup.evaluation.metrics import METRICS

from test_eval_metrics import reference_metrics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ml100k():
    from conftest import SKIP_NO_DATA, shared_datasets_dir
    from ktup.data import load_dataset

    d = shared_datasets_dir()
    if d is None or not (d / "ml-100k-recbole-split").is_dir():
        pytest.skip(SKIP_NO_DATA)
    return load_dataset(DataConfig(dataset=str(d / "ml-100k-recbole-split"), split="given"))


def test_popularity_ranking_matches_reference(ml100k):
    ds = ml100k
    pop = np.bincount(ds.train.items, minlength=ds.n_items).astype(np.float32)   # many ties
    table = torch.from_numpy(pop)

    def popularity(users, items):
        return table[items].expand(len(users), -1)

    res = evaluate_recommendation(popularity, ds, "test", ks=(10, 20))
    gold_ptr, gold_idx = ds.test.csr()
    seen_ptr, seen_idx = ds.seen_before("test").csr()
    from ktup.evaluation.topk import tie_keys

    keys = tie_keys(torch.arange(ds.n_users), torch.arange(ds.n_items), 0).numpy()   # the seeded tie order
    users = [u for u in range(ds.n_users) if gold_ptr[u + 1] > gold_ptr[u]]
    assert res.users.tolist() == users and res.n_users == 943
    sums = {f"{m}@{k}": 0.0 for m in METRICS for k in (10, 20)}
    for u in users:
        seen = set(seen_idx[seen_ptr[u]:seen_ptr[u + 1]].tolist())
        ranked = sorted((i for i in range(ds.n_items) if i not in seen), key=lambda i: (-pop[i], keys[u, i], i))[:20]
        gold = set(gold_idx[gold_ptr[u]:gold_ptr[u + 1]].tolist())
        for k in (10, 20):
            for m, v in reference_metrics(ranked, gold, k).items():
                sums[f"{m}@{k}"] += v
    for key, total in sums.items():
        assert res.summary[key] == pytest.approx(total / len(users), abs=1e-9), key
    assert res.summary["ndcg_ktup@10"] >= res.summary["ndcg@10"]
    assert 0.05 < res.summary["recall@10"] < 0.3     # popularity is a weak but real baseline


def test_link_prediction_on_ml100k_kg(ml100k):
    ds = ml100k

    class Constant:
        def score_tails(self, h, r, entities=None):
            return torch.zeros(len(h), ds.n_entities if entities is None else len(entities))

        def score_heads(self, r, t, entities=None):
            return torch.zeros(len(r), ds.n_entities if entities is None else len(entities))

    res = evaluate_link_prediction(Constant(), ds, "test", max_triples=200)
    assert res.n_triples == 200
    # every candidate tied: realistic rank = 1 + (competitors left after filtering) / 2
    known = ds.kg_all
    hr = {}
    for h, r, _ in known.tolist():
        hr[(h, r)] = hr.get((h, r), 0) + 1
    expect = [1 + (ds.n_entities - hr[(h, r)]) / 2 for h, r, _ in res.triples.tolist()]
    np.testing.assert_allclose(res.tail_ranks, expect)
