"""Recommend / explain on the real ml-100k KG (untrained model: the plumbing, ids, titles, evidence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ktup.config import DataConfig, ModelConfig

pytestmark = pytest.mark.integration

from conftest import SKIP_NO_DATA, shared_datasets_dir

SHARED = shared_datasets_dir()
SPLIT = (SHARED or Path("/nonexistent")) / "ml-100k-recbole-split"


@pytest.fixture(scope="module")
def rec():
    if not (SPLIT / "ml-100k.train.inter").exists():
        pytest.skip(SKIP_NO_DATA)
    from ktup.data.builder import build_dataset
    from ktup.data.formats import read_dir
    from ktup.explain import Recommender
    from ktup.models import build_model

    d = build_dataset(read_dir(SPLIT), DataConfig(dataset=str(SPLIT), split="given"))
    torch.manual_seed(0)
    return Recommender(build_model(ModelConfig(model="ktup", embedding_size=16), d), d)


def test_all_users_top10_unseen_with_titles(rec):
    d = rec.dataset
    lists = rec.recommend(list(d.users.tokens), k=10)
    assert len(lists) == 943 and all(len(x) == 10 for x in lists)
    by_user = dict(zip(d.users.tokens, lists))
    assert all(r["title"] for r in by_user["196"])
    u = d.users.index("196")
    assert not {d.items.index(r["item"]) for r in by_user["196"]} & set(rec.history(u).tolist())


def test_explanations_agree_with_batched_paths(rec):
    d = rec.dataset
    users = np.arange(0, d.n_users, 97)
    items, _ = rec.top_k(users, k=5)
    uu, ii = np.repeat(users, 5), items.reshape(-1)
    xs = [rec._explain_ids(int(u), int(i)) for u, i in zip(uu, ii)]
    rel = np.array([d.relations.index(x["named"]["relation"]) for x in xs])   # the evidence is the named relation's
    batch = rec.evidence.paths_exist(uu, ii, rel, rec._seen_indptr, rec._seen_items)
    assert batch.tolist() == [x["evidence"]["paths_found"] for x in xs]
    assert any(x["evidence"]["paths_found"] for x in xs)
    names = {x["top"]["relation_name"] for x in xs} | {x["named"]["relation_name"] for x in xs}
    assert not any("." in n for n in names)           # Freebase tokens are prettified
    # a relation with a KG path is named whenever one exists; mids never reach the text
    assert all(x["named"]["chosen_by"] == "latent-class" for x in xs if x["evidence"]["paths_found"])
    assert not any(" m." in x["text"] for x in xs)
