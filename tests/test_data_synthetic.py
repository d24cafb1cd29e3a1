"""The planted generator: sizes, determinism, and ground truth aligned through filters and splits."""

from __future__ import annotations

import numpy as np
import pytest

from ktup.config import DataConfig
from ktup.data.synthetic import PRESETS, generate, generate_raw


def _tail_under(ds, item: int, rel: int) -> set:
    kg = ds.kg_all
    e = ds.item_entity[item]
    return set(kg[(kg[:, 0] == e) & (kg[:, 1] == rel), 2].tolist())


def test_sizes_and_determinism():
    a = generate(n_users=60, n_items=40, n_interactions=900, n_relations=3, values_per_relation=5, seed=1)
    b = generate(n_users=60, n_items=40, n_interactions=900, n_relations=3, values_per_relation=5, seed=1)
    c = generate(n_users=60, n_items=40, n_interactions=900, n_relations=3, values_per_relation=5, seed=2)
    assert a.n_interactions == 900 and a.n_relations == 3
    assert a.info()["triples"] == 40 * 3 and a.n_linked_items == a.n_items
    assert a.meta["split"]["hash"] == b.meta["split"]["hash"] != c.meta["split"]["hash"]
    pairs = np.concatenate([a.train.users * a.n_items + a.train.items, a.valid.users * a.n_items + a.valid.items,
                            a.test.users * a.n_items + a.test.items])
    assert np.unique(pairs).size == pairs.size                           # no duplicate (user, item)


@pytest.mark.parametrize("cfg", [None, DataConfig(dataset="s", drop_unlinked=False, k_core=6, split="loo", split_seed=4)])
def test_planted_relations_aligned_with_each_split(cfg):
    """With one value per (item, relation) and 2 favourite values per (user, relation), the items a
    user reached through relation r carry at most 2 distinct values under r: true for the planted
    relations, false (with high probability) for shuffled ones."""
    ds = generate(n_users=80, n_items=60, n_interactions=2500, n_relations=4, values_per_relation=10,
                  favourites=2, seed=3, cfg=cfg)
    pr = ds.planted_relations
    assert set(pr) == {"train", "valid", "test"}
    for name in ("train", "valid", "test"):
        assert pr[name].shape == (len(ds.split(name)),) and pr[name].dtype == np.int64
    users = np.concatenate([ds.train.users, ds.valid.users, ds.test.users])
    items = np.concatenate([ds.train.items, ds.valid.items, ds.test.items])
    rels = np.concatenate([pr["train"], pr["valid"], pr["test"]])

    def max_values(rels):
        worst = 0
        for u in range(ds.n_users):
            for r in range(ds.n_relations):
                sel = items[(users == u) & (rels == r)]
                vals = set().union(*[_tail_under(ds, i, r) for i in sel]) if sel.size else set()
                worst = max(worst, len(vals))
        return worst

    assert max_values(rels) <= 2
    shuffled = np.random.default_rng(0).permutation(rels)
    assert max_values(shuffled) > 2


def test_noise_marks_unplanted_interactions():
    raw = generate_raw(n_users=50, n_items=400, n_interactions=1000, n_relations=3, values_per_relation=50, noise=0.3, seed=0)
    frac = (raw.extra["planted_relation"] == -1).mean()
    assert 0.2 < frac < 0.4


def test_presets_tiny_and_small_build_fast(tiny_dataset):
    assert tiny_dataset.n_users == PRESETS["synthetic-tiny"]["n_users"]
    assert tiny_dataset.n_interactions == PRESETS["synthetic-tiny"]["n_interactions"]
    assert tiny_dataset.name == "synthetic-tiny"
    assert tiny_dataset.planted_relations is not None
