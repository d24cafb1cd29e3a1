"""Knowledge-graph completion models: TransH (the KG half of KTUP) and TransE (a baseline).

``f(h, r, t) = ‖h⊥ + r − t⊥‖`` (L1 or squared L2), the projections onto the relation's
hyperplane (TransH) or none (TransE). Scores are ``−f``. The KG side of KTUP reuses
:class:`KGScoringMixin`, so link prediction is identical for TransH and KTUP.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model
from ktup.models.scoring import hyperplane_distance_all


def _as_long(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.long)


class KGScoringMixin:
    """Triple scoring for a model holding ``entity`` / ``relation`` embeddings and, for
    TransH-style models, ``relation_norm`` (``None`` for TransE).

    Subclasses define ``n_entities`` (real entities; a padding row beyond it is never scored),
    ``norm``, ``unit_normals``, ``margin``, ``kg_constraint_weight`` and ``memory_budget_mb``.
    """

    entity: nn.Embedding
    relation: nn.Embedding
    relation_norm: Optional[nn.Embedding]

    def _kg_normals(self, r: torch.Tensor) -> Optional[torch.Tensor]:
        if self.relation_norm is None:
            return None
        return fn.normal(self.relation_norm(r), self.unit_normals)

    def _kg_distance(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Distances of triples; ids of any (broadcastable) shape."""
        return self._kg_distance_vec(self.entity(h), self.relation(r), self._kg_normals(r), self.entity(t))

    def _kg_distance_vec(self, h_e: torch.Tensor, r_e: torch.Tensor, w: Optional[torch.Tensor],
                         t_e: torch.Tensor) -> torch.Tensor:
        """Distances from already gathered rows (..., d); ``w`` None for TransE."""
        if w is not None:
            h_e, t_e = fn.project(h_e, w), fn.project(t_e, w)
        return fn.distance(h_e + r_e - t_e, self.norm)

    def kg_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        """Margin ranking ``mean max(0, f(pos) − f(neg) + γ)`` plus, for TransH, the weighted soft
        constraints (orthogonality of the batch's relations, norm of the batch's entities) summed
        over the batch and divided by its size, so the loss is a per-triple mean like ``rec_loss``.

        Each table is gathered once per step (heads, tails and both corruptions in one entity
        lookup): one index kernel and, with sparse gradients, one sparse gradient per table."""
        h, r, t = self._ids(heads), self._ids(relations), self._ids(tails)
        nh, nt = self._ids(neg_heads), self._ids(neg_tails)
        B = h.shape[0]
        ids = torch.cat([h, t, nh.reshape(-1), nt.reshape(-1)])
        ents = self.entity(ids)                              # (2B + 2·B·n_neg, d)
        n_neg = nh.numel()
        # split, not slices: a slice's backward zero-fills a tensor of the whole gather per slice
        # (four (2B + 2·B·n_neg, d) fills per step, a third of a KG step); split's backward
        # concatenates. Same gradient values either way.
        h_e, t_e, nh_e, nt_e = torch.split(ents, [B, B, n_neg, nt.numel()])
        nh_e, nt_e = nh_e.reshape(*nh.shape, -1), nt_e.reshape(*nt.shape, -1)
        r_e = self.relation(r)                               # (B, d)
        w_raw = None if self.relation_norm is None else self.relation_norm(r)
        w = None if w_raw is None else fn.normal(w_raw, self.unit_normals)
        pos = self._kg_distance_vec(h_e, r_e, w, t_e)       # (B,)
        if nh.dim() == 2:
            neg = self._kg_distance_vec(nh_e, r_e[:, None], None if w is None else w[:, None], nt_e)  # (B, n_neg)
            pos = pos[:, None]
        else:
            neg = self._kg_distance_vec(nh_e, r_e, w, nt_e)  # (B,)
        loss = fn.margin_ranking_loss(pos, neg, self.margin)
        if w_raw is not None and self.kg_constraint_weight > 0:
            cons = fn.orthogonal_loss(r_e, w_raw) + fn.entity_norm_loss(ents)
            loss = loss + self.kg_constraint_weight * cons / B
        return loss

    def score_triples(self, heads, relations, tails) -> torch.Tensor:
        return -self._kg_distance(self._ids(heads), self._ids(relations), self._ids(tails))

    def _candidates(self, entities: Optional[torch.Tensor]) -> torch.Tensor:
        if entities is None:
            return self.entity.weight[: self.n_entities]
        return self.entity(self._ids(entities))

    def score_tails(self, heads, relations, entities=None) -> torch.Tensor:
        h, r = self._ids(heads), self._ids(relations)
        w = self._kg_normals(r)
        h_e = self.entity(h)
        q = (h_e if w is None else fn.project(h_e, w)) + self.relation(r)      # (B, d)
        return -hyperplane_distance_all(q, w, self._candidates(entities), norm=self.norm,
                                        budget_mb=self.memory_budget_mb, groups=r)

    def score_heads(self, relations, tails, entities=None) -> torch.Tensor:
        r, t = self._ids(relations), self._ids(tails)
        w = self._kg_normals(r)
        t_e = self.entity(t)
        q = (t_e if w is None else fn.project(t_e, w)) - self.relation(r)      # (B, d)
        return -hyperplane_distance_all(q, w, self._candidates(entities), norm=self.norm,
                                        budget_mb=self.memory_budget_mb, groups=r)


class TransH(KGScoringMixin, Model):
    """TransH (Wang et al., 2014) with the spec's unit normals (free normals as an option)."""

    name = "transh"
    uses_kg = True
    _with_normals = True

    def __init__(self, n_entities: int, n_relations: int, embedding_size: int = 64, *, norm: str = "l1",
                 unit_normals: bool = True, margin: float = 1.0, kg_constraint_weight: float = 0.01):
        super().__init__()
        self.n_entities, self.n_relations, self.embedding_size = n_entities, n_relations, embedding_size
        self.norm, self.unit_normals = norm, unit_normals
        self.margin, self.kg_constraint_weight = margin, kg_constraint_weight
        self.memory_budget_mb = 256.0
        self.entity = nn.Embedding(n_entities, embedding_size)
        self.relation = nn.Embedding(n_relations, embedding_size)
        self.relation_norm = nn.Embedding(n_relations, embedding_size) if self._with_normals else None
        for emb in (self.entity, self.relation, self.relation_norm):
            if emb is not None:
                fn.xavier_normalised_(emb.weight)

    @classmethod
    def build(cls, config, dataset) -> "TransH":
        return cls(dataset.n_entities, dataset.n_relations, config.embedding_size, norm=config.norm,
                   unit_normals=config.unit_normals, margin=config.margin,
                   kg_constraint_weight=config.kg_constraint_weight)


    def tables(self) -> dict[str, str]:
        out = {"entity": "entities", "relation": "relations"}
        if self.relation_norm is not None:
            out["relation_norm"] = "relations"
        return out


class TransE(TransH):
    """TransE (Bordes et al., 2013): no hyperplanes; entities renormalised to unit length after
    each step (``constrain_``), as in the original algorithm, instead of soft constraints."""

    name = "transe"
    _with_normals = False

    def constrain_(self) -> None:
        """Unit-length entities. With sparse gradients only the rows the step touched can have
        left the sphere, so only they are renormalised (a step's cost stays O(batch))."""
        with torch.no_grad():
            w, g = self.entity.weight, self.entity.weight.grad
            if g is not None and g.is_sparse:
                rows = g.coalesce().indices()[0]
                w.index_copy_(0, rows, fn.unit(w.index_select(0, rows)))
            else:
                w.copy_(fn.unit(w))
