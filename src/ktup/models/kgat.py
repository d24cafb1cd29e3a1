"""KGAT (Wang et al., KDD 2019): attentive embedding propagation over the collaborative
knowledge graph (CKG: user–item interactions plus KG triples, items aligned with their entities).

* Edges ``(h, r, t)``: every training KG triple and its inverse (relation ``r + R``), every
  training interaction ``(u, interact, i)`` and ``(i, interacted_by, u)``: 2R + 2 relations.
* Attention (eq. 4-5): ``π(h, r, t) = (W_r e_t)ᵀ tanh(W_r e_h + e_r)``, softmax over the edges
  leaving ``h``. It is a constant of the propagation, recomputed once per epoch
  (:meth:`KGAT.refresh_attention`, run by the ``on_epoch_start`` hook before each epoch, as the
  authors' code does) and saved with the weights (the ``attention`` buffer), so a resumed run is exact.
* Propagation (eq. 3, 8): ``e_N = A e`` with the sparse attention matrix ``A`` (one
  ``torch.sparse.mm`` per layer, no loop over edges), the bi-interaction aggregator
  ``LeakyReLU(W₁(e + e_N)) + LeakyReLU(W₂(e ⊙ e_N))``, message dropout, layer sizes
  ``(d, d/2, d/4)`` (the paper's 64-32-16 for d = 64).
* Prediction (eq. 11-12): ``e* = e⁽⁰⁾ ‖ ê⁽¹⁾ ‖ … ‖ ê⁽ᴸ⁾`` (each layer's output L2-normalised, as in
  the authors' code), ``ŷ(u, i) = e*_uᵀ e*_i``; BPR loss on it (eq. 13).
* KG loss: TransR with ``−ln σ(g(neg) − g(pos))`` (eq. 1-2), sharing ``e``, ``e_r`` and ``W_r``
  with the attention.

In eval mode the final user and item matrices are computed once (``prepare_inference``) and
cached (until the next ``train()``, ``refresh_attention()`` or ``load_state_dict``), so full ranking is one matmul.
Explains nothing yet: attention weights rank a user's or item's neighbours, but no per-(user,
item) relation is induced (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model
from ktup.models.functional import item_node_rows
from ktup.models.transr import TransRScoring, identity_projections_


def ckg_edges(dataset, item_node: np.ndarray, n_relations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heads, tails, relations) of the collaborative KG in node ids (users first, then nodes),
    deduplicated and sorted by (head, tail)."""
    U = dataset.n_users
    kg = np.asarray(dataset.kg_train, dtype=np.int64).reshape(-1, 3)
    u = np.asarray(dataset.train.users, dtype=np.int64)
    i = U + item_node[np.asarray(dataset.train.items, dtype=np.int64)]
    h = np.concatenate([U + kg[:, 0], U + kg[:, 2], u, i])
    t = np.concatenate([U + kg[:, 2], U + kg[:, 0], i, u])
    r = np.concatenate([kg[:, 1], kg[:, 1] + n_relations,
                        np.full(u.shape[0], 2 * n_relations), np.full(u.shape[0], 2 * n_relations + 1)])
    e = np.unique(np.stack([h, t, r], 1), axis=0)          # sorted by head, tail, relation
    return e[:, 0], e[:, 1], e[:, 2]


@dataclass
class KGATOptions:
    layer_sizes: tuple = ()           # output sizes of the propagation layers; () = (d, d/2, d/4)
    mess_dropout: float = 0.1         # message dropout in training (scores never use it)


class KGAT(TransRScoring, Model):
    name = "kgat"
    uses_rec = True
    uses_kg = True
    Options = KGATOptions

    def __init__(self, n_users: int, n_items: int, n_entities: int, n_relations: int, item_entity,
                 edges: tuple[np.ndarray, np.ndarray, np.ndarray], embedding_size: int = 64, *,
                 layer_sizes: Optional[tuple[int, ...]] = None, dropout: float = 0.1,
                 kg_constraint_weight: float = 0.0, margin: float = 1.0):
        super().__init__()
        d = embedding_size
        self.n_users, self.n_items, self.n_entities, self.n_relations = n_users, n_items, n_entities, n_relations
        self.embedding_size = self.relation_size = d
        self.margin, self.kg_constraint_weight, self.kg_objective = margin, kg_constraint_weight, "bpr"
        self.memory_budget_mb = 256.0
        self.layer_sizes = tuple(layer_sizes or (d, max(d // 2, 1), max(d // 4, 1)))
        self.dropout = float(dropout)
        item_node = item_node_rows(item_entity, n_entities)
        n_nodes = n_entities + int((np.asarray(item_entity) < 0).sum())
        self.n_nodes = n_users + n_nodes
        self.user = nn.Embedding(n_users, d)
        self.entity = nn.Embedding(n_nodes, d)                       # entities, then unlinked items
        self.relation = nn.Embedding(2 * n_relations + 2, d)         # r, inverse r, interact, interacted_by
        self.relation_proj = nn.Embedding(2 * n_relations + 2, d * d)
        for emb in (self.user, self.entity, self.relation):
            fn.xavier_normalised_(emb.weight)
        identity_projections_(self.relation_proj, d, d)
        sizes = (d, *self.layer_sizes)
        self.w_sum = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.w_prod = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        h, t, r = (torch.as_tensor(x, dtype=torch.long) for x in edges)
        self.register_buffer("item_node", item_node, persistent=False)
        self.register_buffer("edge_head", h, persistent=False)
        self.register_buffer("edge_tail", t, persistent=False)
        self.register_buffer("edge_rel", r, persistent=False)
        self.register_buffer("attention", torch.zeros(h.shape[0]))    # saved: resumed runs are exact
        self._adjacency: Optional[torch.Tensor] = None
        self._final: Optional[torch.Tensor] = None
        self.refresh_attention()

    def tables(self) -> dict[str, str]:
        """Node rows after the entities (unlinked items) and the inverse/interaction relation rows
        after the KG relations are extra rows of these tables."""
        return {"user": "users", "entity": "entities", "relation": "relations"}

    def on_epoch_start(self, epoch: int) -> None:
        self.refresh_attention()

    def prepare_inference(self) -> None:
        self._final = None
        self._final_embeddings()

    @classmethod
    def build(cls, config, dataset) -> "KGAT":
        nodes = item_node_rows(dataset.item_entity, dataset.n_entities).numpy()
        edges = ckg_edges(dataset, nodes, dataset.n_relations)
        opts = config.options_for(cls.name)
        return cls(dataset.n_users, dataset.n_items, dataset.n_entities, dataset.n_relations, dataset.item_entity,
                   edges, config.embedding_size, margin=config.margin,
                   layer_sizes=tuple(int(x) for x in opts.layer_sizes) or None, dropout=opts.mess_dropout)

    # ------------------------------------------------------------- attention
    @torch.no_grad()
    def refresh_attention(self) -> None:
        """π for every CKG edge from the current weights, softmax-normalised per head; one
        batched projection per relation (2R + 2 matmuls), no loop over edges."""
        ego = self._ego()
        scores = torch.empty_like(self.attention)
        for rel in torch.unique(self.edge_rel).tolist():
            idx = (self.edge_rel == rel).nonzero().squeeze(1)
            m = self.relation_proj.weight[rel].reshape(self.embedding_size, self.relation_size)
            eh, et = ego[self.edge_head[idx]] @ m, ego[self.edge_tail[idx]] @ m
            scores[idx] = (et * torch.tanh(eh + self.relation.weight[rel])).sum(1)
        N = self.n_nodes
        peak = torch.full((N,), float("-inf"), dtype=scores.dtype, device=scores.device)
        peak = peak.scatter_reduce(0, self.edge_head, scores, reduce="amax", include_self=True)
        ex = torch.exp(scores - peak[self.edge_head])
        total = torch.zeros(N, dtype=scores.dtype, device=scores.device).index_add_(0, self.edge_head, ex)
        self.attention.copy_(ex / total[self.edge_head])
        self._invalidate()

    def _adj(self) -> torch.Tensor:
        if self._adjacency is None:
            idx = torch.stack([self.edge_head, self.edge_tail])
            self._adjacency = torch.sparse_coo_tensor(idx, self.attention, (self.n_nodes, self.n_nodes),
                                                       check_invariants=False).coalesce()
        return self._adjacency

    def _invalidate(self) -> None:
        self._adjacency = None
        self._final = None

    def _apply(self, fn_, *args, **kwargs):   # .to(device) / .double(): cached tensors follow
        self._invalidate()
        return super()._apply(fn_, *args, **kwargs)

    def train(self, mode: bool = True) -> "KGAT":
        self._final = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._invalidate()
        return out

    # ----------------------------------------------------------- propagation
    def _ego(self) -> torch.Tensor:
        return torch.cat([self.user.weight, self.entity.weight])           # (N, d): users, then nodes

    def propagate(self, dropout: bool = False) -> torch.Tensor:
        """(N, d + Σ layer sizes): every node's concatenated layer outputs (message dropout
        only for the training loss: scores are deterministic in either mode)."""
        A = self._adj()
        ego = self._ego()
        outs = [ego]
        for w1, w2 in zip(self.w_sum, self.w_prod):
            side = torch.sparse.mm(A, ego)
            ego = F.leaky_relu(w1(ego + side), 0.2) + F.leaky_relu(w2(ego * side), 0.2)
            ego = F.dropout(ego, self.dropout, dropout)
            outs.append(F.normalize(ego, dim=1))
        return torch.cat(outs, 1)

    def _final_embeddings(self) -> torch.Tensor:
        if self.training:                  # weights change between calls: no cache
            with torch.no_grad():
                return self.propagate()
        if self._final is None:
            with torch.no_grad():
                self._final = self.propagate()
        return self._final

    # ------------------------------------------------------------------ losses
    def rec_loss(self, users, pos_items, neg_items) -> torch.Tensor:
        final = self.propagate(dropout=self.training)
        u = final[self._ids(users)]
        pos_i, neg = self._ids(pos_items), self._ids(neg_items)
        return fn.bpr_loss_dot(u, final[self.n_users + self.item_node[pos_i]], final[self.n_users + self.item_node[neg]])

    def kg_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        return self.transr_loss(heads, relations, tails, neg_heads, neg_tails)

    # ------------------------------------------------------------------ scores
    def score_pairs(self, users, items) -> torch.Tensor:
        final = self._final_embeddings()
        return (final[self._ids(users)] * final[self.n_users + self.item_node[self._ids(items)]]).sum(-1)

    def score_all_items(self, users, items=None) -> torch.Tensor:
        final = self._final_embeddings()
        rows = self.item_node if items is None else self.item_node[self._ids(items)]
        return final[self._ids(users)] @ final[self.n_users + rows].T
