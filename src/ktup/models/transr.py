"""TransR (Lin et al., AAAI 2015): entities live in an entity space, each relation has its own
space reached through a projection matrix ``M_r``:

    h_r = h M_r,   t_r = t M_r,   f_r(h, t) = ‖h_r + r − t_r‖²₂           (paper eq. 2-3)

trained with the margin ranking loss ``max(0, f(pos) + γ − f(neg))`` under the norm constraints
``‖h‖, ‖r‖, ‖h M_r‖, ‖t M_r‖ ≤ 1`` (eq. 4). Here the first two are hard (rows clipped back into
the unit ball after each step, like TransE's renormalisation) and the projected ones soft (a
hinge ``max(0, ‖x M_r‖² − 1)`` weighted by ``model.kg_constraint_weight``). ``M_r`` starts as the
identity, so training starts from TransE's geometry (the paper initialises from trained TransE).

:class:`TransRScoring` holds the triple scoring and is reused by CKE and KGAT, whose KG halves are
TransR; they use the pairwise log-likelihood ``−ln σ(f(neg) − f(pos))`` of their papers instead of
the margin (``kg_objective = "bpr"``). Scores are ``−f``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model


class TransRScoring:
    """TransR triple scoring for a model holding ``entity`` (rows ≥ ``n_entities`` are never
    candidates), ``relation`` (R, d_r) and ``relation_proj`` (R, d·d_r: ``M_r`` row-major).

    Subclasses set ``n_entities``, ``embedding_size`` (d), ``relation_size`` (d_r), ``margin``,
    ``kg_objective`` ("margin" or "bpr"), ``kg_constraint_weight`` and ``memory_budget_mb``."""

    entity: nn.Embedding
    relation: nn.Embedding
    relation_proj: nn.Embedding

    def _proj(self, r: torch.Tensor) -> torch.Tensor:
        """(..., d, d_r) projection matrices of relation ids."""
        return self.relation_proj(r).reshape(*r.shape, self.embedding_size, self.relation_size)

    @staticmethod
    def _project(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """x (..., d) times M (..., d, d_r) → (..., d_r), batched over the leading dims."""
        return (x.unsqueeze(-2) @ m).squeeze(-2)

    def _transr_parts(self, heads, relations, tails, neg_heads, neg_tails):
        """Distances of positives (B,) and corruptions (B,) or (B, n); projected rows for the constraint."""
        h, r, t = self._ids(heads), self._ids(relations), self._ids(tails)
        nh, nt = self._ids(neg_heads), self._ids(neg_tails)
        B = h.shape[0]
        n_neg = nh.numel()
        ents = self.entity(torch.cat([h, t, nh.reshape(-1), nt.reshape(-1)]))   # one gather
        m = self._proj(r)                                                      # (B, d, d_r)
        r_e = self.relation(r)                                                 # (B, d_r)
        h_p, t_p = self._project(ents[:B], m), self._project(ents[B:2 * B], m)
        pos = fn.distance(h_p + r_e - t_p, "l2")                               # squared L2
        nh_e = ents[2 * B:2 * B + n_neg].reshape(*nh.shape, -1)
        nt_e = ents[2 * B + n_neg:].reshape(*nt.shape, -1)
        if nh.dim() == 2:
            nh_p, nt_p = nh_e @ m, nt_e @ m                                    # (B, n, d_r)
            neg = fn.distance(nh_p + r_e[:, None] - nt_p, "l2")                # (B, n)
            pos = pos[:, None]
        else:
            nh_p, nt_p = self._project(nh_e, m), self._project(nt_e, m)
            neg = fn.distance(nh_p + r_e - nt_p, "l2")
        projected = torch.cat([h_p, t_p, nh_p.reshape(-1, self.relation_size), nt_p.reshape(-1, self.relation_size)])
        return pos, neg, projected

    def transr_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        pos, neg, projected = self._transr_parts(heads, relations, tails, neg_heads, neg_tails)
        if self.kg_objective == "margin":
            loss = fn.margin_ranking_loss(pos, neg, self.margin)
        else:   # −ln σ(f(neg) − f(pos)): CKE's and KGAT's pairwise KG objective
            loss = F.softplus(pos - neg).mean()
        if self.kg_constraint_weight > 0:
            over = (projected.pow(2).sum(-1) - 1.0).clamp_min(0.0)
            loss = loss + self.kg_constraint_weight * over.sum() / pos.shape[0]
        return loss

    def score_triples(self, heads, relations, tails) -> torch.Tensor:
        h, r, t = self._ids(heads), self._ids(relations), self._ids(tails)
        h, r, t = torch.broadcast_tensors(h, r, t)
        m = self._proj(r)
        d = self._project(self.entity(h), m) + self.relation(r) - self._project(self.entity(t), m)
        return -fn.distance(d, "l2")

    def _candidates(self, entities: Optional[torch.Tensor]) -> torch.Tensor:
        if entities is None:
            return self.entity.weight[: self.n_entities]
        return self.entity(self._ids(entities))

    def _score_against_all(self, anchor: torch.Tensor, r: torch.Tensor, sign: float,
                           entities: Optional[torch.Tensor]) -> torch.Tensor:
        """−‖a M_r + sign·r − c M_r‖² for every candidate c: candidates are projected once per
        distinct relation of the batch (a loop over relations, not over queries)."""
        cand = self._candidates(entities)                                     # (C, d)
        out = torch.empty((anchor.shape[0], cand.shape[0]), dtype=cand.dtype, device=cand.device)
        for rel in torch.unique(r).tolist():
            rows = (r == rel).nonzero().squeeze(1)
            m = self._proj(torch.tensor(rel, device=r.device))                # (d, d_r)
            q = self.entity(anchor[rows]) @ m + sign * self.relation.weight[rel]   # (b, d_r)
            c = cand @ m                                                      # (C, d_r)
            d2 = (q.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1)[None] - 2.0 * q @ c.T).clamp_min(0.0)
            out[rows] = -d2
        return out

    def score_tails(self, heads, relations, entities=None) -> torch.Tensor:
        return self._score_against_all(self._ids(heads), self._ids(relations), 1.0, entities)

    def score_heads(self, relations, tails, entities=None) -> torch.Tensor:
        return self._score_against_all(self._ids(tails), self._ids(relations), -1.0, entities)


def identity_projections_(proj: nn.Embedding, d: int, d_r: int) -> None:
    """Every ``M_r`` = the (d × d_r) identity (TransE's geometry at the start)."""
    with torch.no_grad():
        eye = torch.eye(d, d_r, dtype=proj.weight.dtype, device=proj.weight.device).reshape(-1)
        proj.weight.copy_(eye.expand_as(proj.weight))


def clip_rows_(emb: nn.Embedding, limit: float = 1.0) -> None:
    """Rows longer than ``limit`` scaled back onto the ball (only the rows a sparse step touched)."""
    with torch.no_grad():
        w, g = emb.weight, emb.weight.grad
        if g is not None and g.is_sparse:
            rows = g.coalesce().indices()[0]
            v = w.index_select(0, rows)
            w.index_copy_(0, rows, v * (limit / v.norm(dim=1, keepdim=True).clamp_min(fn.EPS)).clamp_max(1.0))
        else:
            w.mul_((limit / w.norm(dim=1, keepdim=True).clamp_min(fn.EPS)).clamp_max(1.0))


@dataclass
class TransROptions:
    relation_size: int = 0            # width of the relation space (0 = model.embedding_size)


class TransR(TransRScoring, Model):
    """TransR for KG completion (link prediction), the paper's margin loss and constraints."""

    name = "transr"
    uses_kg = True
    Options = TransROptions

    def __init__(self, n_entities: int, n_relations: int, embedding_size: int = 64, *, margin: float = 1.0,
                 kg_constraint_weight: float = 0.01, relation_size: Optional[int] = None):
        super().__init__()
        self.n_entities, self.n_relations = n_entities, n_relations
        self.embedding_size, self.relation_size = embedding_size, relation_size or embedding_size
        self.margin, self.kg_constraint_weight, self.kg_objective = margin, kg_constraint_weight, "margin"
        self.memory_budget_mb = 256.0
        self.entity = nn.Embedding(n_entities, embedding_size)
        self.relation = nn.Embedding(n_relations, self.relation_size)
        self.relation_proj = nn.Embedding(n_relations, embedding_size * self.relation_size)
        for emb in (self.entity, self.relation):
            fn.xavier_normalised_(emb.weight)
        identity_projections_(self.relation_proj, embedding_size, self.relation_size)

    @classmethod
    def build(cls, config, dataset) -> "TransR":
        return cls(dataset.n_entities, dataset.n_relations, config.embedding_size, margin=config.margin,
                   kg_constraint_weight=config.kg_constraint_weight,
                   relation_size=config.options_for(cls.name).relation_size or None)

    def kg_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        return self.transr_loss(heads, relations, tails, neg_heads, neg_tails)

    def tables(self) -> dict[str, str]:
        return {"entity": "entities", "relation": "relations"}

    def constrain_(self) -> None:
        """‖h‖, ‖t‖, ‖r‖ ≤ 1 (hard); the projected norms are the loss's soft constraint."""
        clip_rows_(self.entity)
        clip_rows_(self.relation)
