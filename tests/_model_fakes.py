"""Tiny model fixtures shared by the model tests (not a test module)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from ktup.config import ModelConfig
from ktup.models import build_model

N_USERS, N_ITEMS, N_ENT, N_REL, D = 7, 23, 31, 5, 8


def fake_dataset(n_rel: int = N_REL) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    item_entity = rng.permutation(N_ENT)[:N_ITEMS].astype(np.int64)
    item_entity[::4] = -1                                   # some unlinked items
    # a few interactions and triples: graph models (kgat) build their propagation graph from them
    train = SimpleNamespace(users=rng.integers(0, N_USERS, 40), items=rng.integers(0, N_ITEMS, 40))
    kg_train = np.stack([rng.integers(0, N_ENT, 40), rng.integers(0, max(n_rel, 1), 40), rng.integers(0, N_ENT, 40)], 1)
    kg_train = kg_train if n_rel > 0 else kg_train[:0]
    return SimpleNamespace(n_users=N_USERS, n_items=N_ITEMS, n_entities=N_ENT, n_relations=n_rel,
                           item_entity=item_entity, train=train, kg_train=kg_train)


def make(model: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(model=model, embedding_size=D, **kw)
    m = build_model(cfg, fake_dataset()).double()
    with torch.no_grad():                                   # move away from the unit-norm init
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    if hasattr(m, "constrain_"):
        m.constrain_()
    return m.eval()
