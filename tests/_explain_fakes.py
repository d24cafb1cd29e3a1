"""A hand-built KG dataset and a fake explaining model for the recommend/explain tests.

Films A–D are linked to entities; E is not. Directed-by: A, B, C → zemeckis, D → cameron;
actor: A, C → hanks; sequel: B → C (so C reaches B's entity through ``film.film.sequel``).
"""

from __future__ import annotations

import numpy as np
import torch

from ktup.data.dataset import UNLINKED, IdMap, Interactions, KGDataset

RELATIONS = ["film.film.directed_by", "film.director.film", "film.film.actor", "film.film.sequel"]
ENTITIES = ["fA", "fB", "fC", "fD", "zemeckis", "cameron", "hanks"]
ITEMS = ["10", "20", "30", "40", "50"]
TITLES = ["Forrest Gump", "Back to the Future", "Cast Away", "Titanic", "Unlinked Film"]
USERS = ["7", "8", "9"]


def tiny_dataset(entity_names: bool = False) -> KGDataset:
    e = {n: i for i, n in enumerate(ENTITIES)}
    kg = np.array([
        [e["fA"], 0, e["zemeckis"]],
        [e["fB"], 0, e["zemeckis"]],
        [e["fC"], 0, e["zemeckis"]],
        [e["fD"], 0, e["cameron"]],
        [e["zemeckis"], 1, e["fC"]],
        [e["fA"], 2, e["hanks"]],
        [e["fC"], 2, e["hanks"]],
        [e["fB"], 3, e["fC"]],
    ], dtype=np.int64)

    def inter(pairs):
        a = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return Interactions(a[:, 0], a[:, 1], n_users=len(USERS), n_items=len(ITEMS))

    return KGDataset(
        name="tiny",
        users=IdMap(USERS, "user"),
        items=IdMap(ITEMS, "item"),
        entities=IdMap(ENTITIES, "entity"),
        relations=IdMap(RELATIONS, "relation"),
        item_entity=np.array([0, 1, 2, 3, UNLINKED], dtype=np.int64),
        # user 7: A, B in train, D in valid; user 8: C in train, E in test; user 9: nothing.
        train=inter([[0, 0], [0, 1], [1, 2]]),
        valid=inter([[0, 3]]),
        test=inter([[1, 4]]),
        kg_train=kg[:6],
        kg_valid=kg[6:7],
        kg_test=kg[7:],
        item_info={"title": list(TITLES)},
        entity_names=["", "", "", "", "Robert Zemeckis", "James Cameron", "Tom Hanks"] if entity_names else None,
    )


class FakeModel:
    """Scores from a fixed table; preference logits from a fixed (U, I, K) table.

    ``preference_relation`` None behaves like tup; ``explains=False`` like bpr.
    """

    name = "ktup"
    explains = True

    def __init__(self, n_users=3, n_items=5, k=4, seed=0, relations=(0, 1, 2, 3), top=None):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(n_users, n_items, generator=g)        # (U, I) distinct scores
        self.logits = torch.randn(n_users, n_items, k, generator=g)    # (U, I, K)
        if top is not None:  # force preference `top` to win everywhere
            self.logits[..., top] += 10.0
        self.per_pref = torch.randn(n_users, n_items, k, generator=g)
        self.preference_relation = None if relations is None else list(relations)
        self.induction = "soft"

    def eval(self):
        return self

    def score_all_items(self, users, items=None):
        s = self.table[users]
        return s if items is None else s[:, items]

    def score_pairs(self, users, items):
        return self.table[users, items]

    def preference_logits(self, users, items):
        return self.logits[users, items]

    def score_pairs_per_preference(self, users, items):
        return self.per_pref[users, items]
