"""Every real model in ``ktup.models.MODELS`` through both evaluators.

The evaluator's top-K must match a ranking built from the plain per-pair/per-triple formulas
(``score_pairs`` / ``score_triples``) — a check that the fast scoring paths and the evaluator
agree — and evaluation must leave the model's training mode as it found it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.config import ModelConfig
from ktup.data.synthetic import generate
from ktup.evaluation import evaluate_link_prediction, evaluate_recommendation
from ktup.models import MODELS, build_model


@pytest.fixture(scope="module")
def dataset():
    return generate(n_users=30, n_items=25, n_interactions=500, n_relations=3, values_per_relation=4, seed=1)


def _models(dataset):
    for name in MODELS:
        for norm in ("l1", "l2"):
            if name == "bpr" and norm == "l2":
                continue
            torch.manual_seed(0)
            cfg = ModelConfig(model=name, norm=norm, embedding_size=8)
            yield f"{name}-{norm}", build_model(cfg, dataset)


def test_recommendation_matches_pairwise_scores(dataset):
    for label, model in _models(dataset):
        if not model.uses_rec:
            continue
        model.train()
        fast = evaluate_recommendation(model, dataset, "test", ks=(5, 10))
        assert model.training, label

        def pairwise(users, items):
            with torch.no_grad():
                uu = users[:, None].expand(-1, len(items)).reshape(-1)
                ii = items[None, :].expand(len(users), -1).reshape(-1)
                return model.score_pairs(uu, ii).view(len(users), len(items))

        slow = evaluate_recommendation(pairwise, dataset, "test", ks=(5, 10))
        assert fast.n_users == slow.n_users > 0
        for key in fast.summary:
            assert fast.summary[key] == pytest.approx(slow.summary[key], abs=1e-9), (label, key)
        chunked = evaluate_recommendation(model, dataset, "test", ks=(5, 10), user_batch_size=4, memory_budget_mb=1)
        assert chunked.summary == fast.summary, label


def test_link_prediction_matches_triple_scores(dataset):
    kg = dataset.kg_test[:6]
    for label, model in _models(dataset):
        if not model.uses_kg:
            continue
        res = evaluate_link_prediction(model, dataset, "test", max_triples=6)
        known = set(map(tuple, dataset.kg_all.tolist()))
        ents = torch.arange(dataset.n_entities)
        with torch.no_grad():
            for row, (h, r, t) in enumerate(res.triples.tolist()):
                s = model.score_triples(torch.full_like(ents, h), torch.full_like(ents, r), ents).numpy()
                ok = np.array([e == t or (h, r, e) not in known for e in range(dataset.n_entities)])
                ok[t] = False
                gt, eq = (s[ok] > s[t] + 1e-5).sum(), (np.abs(s[ok] - s[t]) <= 1e-5).sum()
                assert res.tail_ranks[row] == pytest.approx(1 + gt + eq / 2, abs=0.5 * eq + 1e-9), label
        assert 1 <= res.summary["mr"] <= dataset.n_entities
    assert len(kg) > 0
