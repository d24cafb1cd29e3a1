"""CKE (Zhang et al., KDD 2016), its structural-knowledge part: an item's latent vector is its
collaborative offset plus the TransR embedding of its KG entity,

    e_i = η_i + v_{a(i)},        ŷ(u, i) = u · e_i

(paper eq. 7 with the structural embedding only; no textual or visual parts). The
recommendation loss is BPR on ``ŷ``; the KG loss is TransR (:class:`~ktup.models.transr.TransRScoring`)
with the paper's pairwise log-likelihood ``−ln σ(f(neg) − f(pos))``; the Gaussian priors of the
Bayesian formulation are the trainer's L2 weight decay. An unlinked item has ``v = 0`` (a zero
padding entity row that never receives gradient). Explains nothing (no relation-level structure).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model
from ktup.models.transr import TransRScoring, identity_projections_


def item_entity_rows(item_entity, pad: int) -> torch.Tensor:
    """Entity row of every item, ``pad`` for unlinked items (negative ids)."""
    ie = np.asarray(item_entity, dtype=np.int64)
    return torch.as_tensor(np.where(ie >= 0, ie, pad), dtype=torch.long)


class CKE(TransRScoring, Model):
    name = "cke"
    uses_rec = True
    uses_kg = True

    def __init__(self, n_users: int, n_items: int, n_entities: int, n_relations: int, item_entity,
                 embedding_size: int = 64, *, margin: float = 1.0, kg_constraint_weight: float = 0.01):
        super().__init__()
        self.n_users, self.n_items, self.n_entities, self.n_relations = n_users, n_items, n_entities, n_relations
        self.embedding_size = self.relation_size = embedding_size
        self.margin, self.kg_constraint_weight, self.kg_objective = margin, kg_constraint_weight, "bpr"
        self.memory_budget_mb = 256.0
        self.user = nn.Embedding(n_users, embedding_size)
        self.item = nn.Embedding(n_items, embedding_size)
        self.entity = nn.Embedding(n_entities + 1, embedding_size, padding_idx=n_entities)   # + zero pad
        self.relation = nn.Embedding(n_relations, embedding_size)
        self.relation_proj = nn.Embedding(n_relations, embedding_size * embedding_size)
        for emb in (self.user, self.item, self.entity, self.relation):
            fn.xavier_normalised_(emb.weight)
        with torch.no_grad():
            self.entity.weight[n_entities].zero_()
        identity_projections_(self.relation_proj, embedding_size, embedding_size)
        self.register_buffer("item_entity_row", item_entity_rows(item_entity, n_entities), persistent=False)

    def tables(self) -> dict[str, str]:
        return {"user": "users", "item": "items", "entity": "entities", "relation": "relations"}

    @classmethod
    def build(cls, config, dataset) -> "CKE":
        return cls(dataset.n_users, dataset.n_items, dataset.n_entities, dataset.n_relations, dataset.item_entity,
                   config.embedding_size, margin=config.margin, kg_constraint_weight=config.kg_constraint_weight)

    def _items(self, items: torch.Tensor) -> torch.Tensor:
        """η_i + v_{a(i)} for item ids of any shape."""
        return self.item(items) + self.entity(self.item_entity_row[items])

    def rec_loss(self, users, pos_items, neg_items) -> torch.Tensor:
        u = self.user(self._ids(users))
        pos_i, neg = self._ids(pos_items), self._ids(neg_items)
        return fn.bpr_loss_dot(u, self._items(pos_i), self._items(neg))

    def kg_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        return self.transr_loss(heads, relations, tails, neg_heads, neg_tails)

    def score_pairs(self, users, items) -> torch.Tensor:
        return (self.user(self._ids(users)) * self._items(self._ids(items))).sum(-1)

    def score_all_items(self, users, items=None) -> torch.Tensor:
        if items is None:
            I = self.item.weight + self.entity.weight[self.item_entity_row]
        else:
            I = self._items(self._ids(items))
        return self.user(self._ids(users)) @ I.T
