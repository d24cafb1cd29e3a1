"""CFKG (Ai et al., 2018, "Learning heterogeneous knowledge base embeddings for explainable
recommendation"): users, items and KG entities are nodes of one graph; a user–item interaction
is the triple (u, interact, i), and everything is embedded by TransE:

    f(h, r, t) = ‖h + r − t‖,     ŷ(u, i) = −‖u + r_interact − i‖

Items *are* their KG entities (a linked item's row is its entity's row); an unlinked item gets
its own node row after the entities. Both losses are TransE's margin ranking loss
``max(0, f(pos) + γ − f(neg))`` (RecBole's choice; the paper uses a sampled softmax), with the
shared ``model.norm`` (``l2`` is the squared distance: same ranking as ‖·‖₂) and ``model.margin``.
User and node rows are clipped to the unit ball after each step (``model.max_norm``; 0 = off).

Explanations: the score is one translation by the ``interact`` relation, so the model itself
binds no recommendation to a KG relation (``explains = False``); its relation-level structure
(relation vectors in the users' space) is exported with the model for path-style explanations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model
from ktup.models.functional import item_node_rows
from ktup.models.kg import KGScoringMixin
from ktup.models.transr import clip_rows_


class CFKG(KGScoringMixin, Model):
    name = "cfkg"
    uses_rec = True
    uses_kg = True

    def __init__(self, n_users: int, n_items: int, n_entities: int, n_relations: int, item_entity,
                 embedding_size: int = 64, *, norm: str = "l2", margin: float = 1.0, max_norm: float = 1.0):
        super().__init__()
        self.n_users, self.n_items, self.n_entities, self.n_relations = n_users, n_items, n_entities, n_relations
        self.embedding_size, self.norm, self.margin, self.max_norm = embedding_size, norm, margin, float(max_norm)
        self.unit_normals, self.kg_constraint_weight, self.memory_budget_mb = True, 0.0, 256.0
        self.register_buffer("item_node", item_node_rows(item_entity, n_entities), persistent=False)
        n_nodes = n_entities + int((np.asarray(item_entity) < 0).sum())
        self.user = nn.Embedding(n_users, embedding_size)
        self.entity = nn.Embedding(n_nodes, embedding_size)              # entities, then unlinked items
        self.relation = nn.Embedding(n_relations + 1, embedding_size)    # KG relations, then `interact`
        self.relation_norm = None                                        # TransE: no hyperplanes
        for emb in (self.user, self.entity, self.relation):
            fn.xavier_normalised_(emb.weight)

    def tables(self) -> dict[str, str]:
        """Node rows after the entities (unlinked items) and the ``interact`` row after the KG
        relations are extra rows of these tables."""
        return {"user": "users", "entity": "entities", "relation": "relations"}

    @property
    def interact(self) -> int:
        """Relation id of the user–item ``interact`` relation."""
        return self.n_relations

    @classmethod
    def build(cls, config, dataset) -> "CFKG":
        return cls(dataset.n_users, dataset.n_items, dataset.n_entities, dataset.n_relations, dataset.item_entity,
                   config.embedding_size, norm=config.norm, margin=config.margin, max_norm=config.max_norm)

    def _query(self, users: torch.Tensor) -> torch.Tensor:
        return self.user(users) + self.relation.weight[self.interact]

    def rec_loss(self, users, pos_items, neg_items) -> torch.Tensor:
        q = self._query(self._ids(users))                                   # (B, d)
        pos_i, neg = self._ids(pos_items), self._ids(neg_items)
        B = pos_i.shape[0]
        nodes = self.entity(self.item_node[torch.cat([pos_i, neg.reshape(-1)])])
        pos = fn.distance(q - nodes[:B], self.norm)
        i_neg = nodes[B:].reshape(*neg.shape, -1)
        if neg.dim() == 2:
            return fn.margin_ranking_loss(pos[:, None], fn.distance(q[:, None] - i_neg, self.norm), self.margin)
        return fn.margin_ranking_loss(pos, fn.distance(q - i_neg, self.norm), self.margin)

    # kg_loss, score_triples, score_tails, score_heads: TransE's (KGScoringMixin)

    def constrain_(self) -> None:
        if self.max_norm > 0:
            clip_rows_(self.user, self.max_norm)
            clip_rows_(self.entity, self.max_norm)

    def score_pairs(self, users, items) -> torch.Tensor:
        q = self._query(self._ids(users))
        return -fn.distance(q - self.entity(self.item_node[self._ids(items)]), self.norm)

    def score_all_items(self, users, items=None) -> torch.Tensor:
        rows = self.item_node if items is None else self.item_node[self._ids(items)]
        I = self.entity.weight[rows]                                        # (N, d)
        q = self._query(self._ids(users))                                   # (B, d)
        if self.norm == "l2":
            return -(q.pow(2).sum(1, keepdim=True) + I.pow(2).sum(1)[None] - 2.0 * q @ I.T).clamp_min(0.0)
        return -torch.cdist(q, I, p=1)
