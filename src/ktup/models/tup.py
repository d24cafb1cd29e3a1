"""TUP (translation-based user preference) and KTUP (TUP jointly learned with TransH).

A user reaches an item through an induced preference on that preference's hyperplane:
``f(u, i) = ‖u⊥ + p* − ĩ⊥‖``. KTUP binds preference k to KG relation k (``p̃_k = p_k + r_k``,
``w̃_k = w_p,k + w_r,k``, or their means) and enhances every linked item with its entity
(``ĩ = i + e[a(i)]``). See docs/MODEL.md for the spec and docs/API.md for the interface.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ktup.config import INDUCTIONS, INFERENCES, check_choice
from ktup.errors import ConfigError, KtupError
from ktup.models import functional as fn
from ktup.models.base import Model
from ktup.models.kg import KGScoringMixin
from ktup.models.recbole_api import RecBoleInterface
from ktup.models.scoring import (
    preference_distance_all,
    preference_distance_per_k,
    preference_pair_distance,
    preference_pair_expected_distance,
)


class TUP(RecBoleInterface, Model):
    """TransUP without a KG: K free preferences, ``ĩ = i``. Also speaks RecBole's method names
    (:class:`ktup.models.recbole_api.RecBoleInterface`)."""

    name = "tup"
    uses_rec = True
    explains = True

    def __init__(self, n_users: int, n_items: int, num_preferences: int, embedding_size: int = 64, *,
                 induction: str = "soft", norm: str = "l1", unit_normals: bool = True,
                 gumbel_temperature: float = 1.0, max_norm: float = 0.0, item_bias: bool = False,
                 inference: str = "induced", user_max_norm: float = 0.0):
        super().__init__()
        if num_preferences <= 0:
            raise ConfigError(f"model.num_preferences: must be > 0, got {num_preferences}")
        check_choice("model.induction", induction, INDUCTIONS)
        check_choice("model.inference", inference, INFERENCES)
        self.n_users, self.n_items, self.embedding_size = n_users, n_items, embedding_size
        self.num_preferences = num_preferences
        self.induction, self.norm, self.unit_normals = induction, norm, unit_normals
        self.inference = inference
        self.gumbel_temperature = gumbel_temperature
        self.max_norm = float(max_norm)   # > 0: unit-ball style clip of user/item(/entity) rows
        self.user_max_norm = float(user_max_norm) or self.max_norm   # users' own radius (0 = max_norm)
        self.memory_budget_mb = 256.0   # bound on the temporaries of score_all_items
        self.user = nn.Embedding(n_users, embedding_size)
        self.item = nn.Embedding(n_items, embedding_size)
        self.preference = nn.Embedding(num_preferences, embedding_size)
        self.preference_norm = nn.Embedding(num_preferences, embedding_size)
        for emb in (self.user, self.item, self.preference, self.preference_norm):
            fn.xavier_normalised_(emb.weight)
        # Optional per-item bias b_i (score = −f(u, i) + b_i): lets a distance model express
        # popularity the way a dot-product model does; it does not depend on the preference, so
        # the induced relation and its explanation are unchanged.
        self.bias = nn.Embedding(n_items, 1) if item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)

    def _item_bias(self, items: Optional[torch.Tensor]) -> torch.Tensor:
        """b_i for item ids of any shape (all items when None), 0 without a bias table."""
        if self.bias is None:
            return torch.zeros((), dtype=self.user.weight.dtype, device=self.user.weight.device)
        return self.bias.weight[:, 0] if items is None else self.bias(self._ids(items))[..., 0]

    @classmethod
    def build(cls, config, dataset) -> "TUP":
        k = config.num_preferences or dataset.n_relations
        if k <= 0:
            raise ConfigError("model.num_preferences: the dataset has no KG relations; set it explicitly (e.g. 20)")
        return cls(dataset.n_users, dataset.n_items, k, config.embedding_size, induction=config.induction,
                   norm=config.norm, unit_normals=config.unit_normals,
                   gumbel_temperature=config.gumbel_temperature, max_norm=getattr(config, "max_norm", 0.0),
                   item_bias=getattr(config, "item_bias", False), inference=getattr(config, "inference", "induced"),
                   user_max_norm=getattr(config, "user_max_norm", 0.0))

    @property
    def scoring(self) -> str:
        """How deterministic scores induce the preference: ``hard`` (argmax α), ``soft`` (the
        softmax-mixed preference) or ``expected`` (the softmax-weighted mean of the K distances,
        i.e. the mean distance under hard induction's Gumbel-max sampling). ``inference`` only
        changes hard models."""
        if self.induction == "expected" or (self.induction == "hard" and self.inference == "expected"):
            return "expected"
        return self.induction   # soft induction is deterministic already: scored as trained

    def constrain_(self) -> None:
        """With ``max_norm > 0``: rescale user and item rows longer than it back onto the ball.
        Translation distances otherwise grow with the norms and the model overfits quickly
        (benchmarks/tuning/RESULTS.md: +0.014 valid NDCG@10 on ml-100k with max_norm = 1)."""
        self._clip_rows(("user", "item"))

    def _clip_rows(self, names: tuple[str, ...]) -> None:
        if self.max_norm <= 0:
            return
        with torch.no_grad():
            for name in names:
                limit = self.user_max_norm if name == "user" else self.max_norm
                w = getattr(self, name).weight
                g = w.grad
                if g is not None and g.is_sparse:   # sparse steps: only touched rows can have grown
                    rows = g.coalesce().indices()[0]
                    v = w.index_select(0, rows)
                    w.index_copy_(0, rows, v * (limit / v.norm(dim=1, keepdim=True).clamp_min(fn.EPS)).clamp_max(1.0))
                else:   # only the rows over the limit are rewritten (the others' factor is exactly 1)
                    norms = w.norm(dim=1)
                    rows = (norms > limit).nonzero()[:, 0]
                    if rows.numel():
                        factor = (limit / norms.index_select(0, rows).clamp_min(fn.EPS)).clamp_max(1.0)
                        w.index_copy_(0, rows, w.index_select(0, rows) * factor[:, None])

    # ------------------------------------------------------------ the tables
    def tables(self) -> dict[str, str]:
        return {"user": "users", "item": "items", "preference": "preferences", "preference_norm": "preferences"}

    @property
    def preference_relation(self) -> Optional[list[int]]:
        """KG relation bound to each preference; None: TUP's preferences are free."""
        return None

    def preference_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p̃, w̃)``, each (K, d): the translation vectors and raw (unnormalised) normals."""
        return self.preference.weight, self.preference_norm.weight

    def item_vectors(self, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Enhanced items ``ĩ`` for ids of any shape (all items when None) → shape + (d,)."""
        return self.item.weight if items is None else self.item(self._ids(items))

    # ------------------------------------------------------------ induction
    def _weights(self, logits: torch.Tensor, noisy: bool) -> torch.Tensor:
        """Preference weights (..., K): softmax (soft); ST-Gumbel one-hot when ``noisy`` and
        hard; plain argmax one-hot otherwise (deterministic inference)."""
        if self.induction in ("soft", "expected"):
            return torch.softmax(logits, dim=-1)
        if noisy:
            return fn.st_gumbel_softmax(logits, self.gumbel_temperature)
        return fn.convert_to_one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)

    def _pair(self, users: torch.Tensor, items: torch.Tensor, noisy: bool):
        """(u, ĩ, weights, distance) of (broadcastable) user and item ids."""
        return self._pair_vec(self.user(self._ids(users)), self.item_vectors(items), noisy)

    def _pair_vec(self, u: torch.Tensor, i: torch.Tensor, noisy: bool):
        """(u, ĩ, weights, distance) of already gathered (broadcastable) rows (..., d).
        Deterministic calls (``noisy`` False) use :attr:`scoring`; noisy ones the training induction."""
        P, W = self.preference_tables()
        a = self._weights((u + i) @ P.T, noisy)
        if self.induction == "expected" or (not noisy and self.scoring == "expected"):
            return u, i, a, preference_pair_expected_distance(u, i, P, W, self.norm, self.unit_normals)
        return u, i, a, preference_pair_distance(u, i, a, P, W, self.norm, self.unit_normals)

    def preference_logits(self, users, items) -> torch.Tensor:
        """(B, K) logits ``α_k = (u + ĩ)·p̃_k``, deterministic (no noise)."""
        P, _ = self.preference_tables()
        return (self.user(self._ids(users)) + self.item_vectors(items)) @ P.T

    # ------------------------------------------------------------------ losses
    def rec_loss(self, users, pos_items, neg_items) -> torch.Tensor:
        """BPR on distances; ST-Gumbel noise when hard and in train mode. neg (B,) or (B, n_neg)."""
        users, pos, neg = self._ids(users), self._ids(pos_items), self._ids(neg_items)
        noisy = self.training
        B = pos.shape[0]
        u = self.user(users)                                # (B, d): one gather per table per step
        items = self.item_vectors(torch.cat([pos, neg.reshape(-1)]))   # (B + B·n_neg, d)
        i_pos, i_neg = torch.split(items, [B, neg.numel()])   # split: no zero-filled slice gradients
        i_neg = i_neg.reshape(*neg.shape, -1)
        d_pos = self._pair_vec(u, i_pos, noisy)[3] - self._item_bias(pos)   # (B,)
        if neg.dim() == 2:
            d_neg = self._pair_vec(u[:, None], i_neg, noisy)[3]   # (B, n_neg)
            d_pos = d_pos[:, None]
        else:
            d_neg = self._pair_vec(u, i_neg, noisy)[3]
        d_neg = d_neg - self._item_bias(neg)
        return fn.bpr_loss(d_pos, d_neg) + self._rec_extra_loss(pos, neg) + self._pair_extra_loss(users, pos, u, i_pos)

    def _rec_extra_loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=self.user.weight.dtype, device=self.user.weight.device)

    def _pair_extra_loss(self, users, pos, u, i_pos) -> torch.Tensor:
        """A term on the positive pairs' induction (KTUP's relation alignment); none in TUP."""
        return torch.zeros((), dtype=self.user.weight.dtype, device=self.user.weight.device)

    # ------------------------------------------------------------------ scores
    def score_pairs(self, users, items) -> torch.Tensor:
        """(B,) ``−f(u, i)`` with deterministic induction (no Gumbel noise in any mode)."""
        return -self._pair(self._ids(users), self._ids(items), noisy=False)[3] + self._item_bias(items)

    def score_all_items(self, users, items=None) -> torch.Tensor:
        """(B, N) scores by the decomposed fast path (module docstring of ktup.models.scoring)."""
        P, W = self.preference_tables()
        U = self.user(self._ids(users))
        I = self.item_vectors(None if items is None else self._ids(items))
        dist = preference_distance_all(U, I, P, W, induction=self.scoring, norm=self.norm,
                                       unit_normals=self.unit_normals, budget_mb=self.memory_budget_mb)
        return self._item_bias(None if items is None else self._ids(items)) - dist

    def score_pairs_per_preference(self, users, items) -> torch.Tensor:
        """(B, K): the pair's score if preference k were the induced one."""
        P, W = self.preference_tables()
        u, i = self.user(self._ids(users)), self.item_vectors(self._ids(items))
        return self._item_bias(items)[..., None] - preference_distance_per_k(u, i, P, W, self.norm, self.unit_normals)

    # ------------------------------------------------------------ pre-training
    def init_from(self, other: Model) -> "TUP":
        """Copy the user, item and preference tables of a trained ``tup``/``ktup`` model."""
        if not isinstance(other, TUP):
            raise KtupError(f"{self.name}: cannot initialise from a {other.name} model")
        for name in ("user", "item", "preference", "preference_norm"):
            _copy_table(self, other, name)
        if self.bias is not None and getattr(other, "bias", None) is not None:
            _copy_table(self, other, "bias")
        return self


def _copy_table(dst: nn.Module, src: nn.Module, name: str, rows: Optional[int] = None) -> None:
    a, b = getattr(dst, name).weight, getattr(src, name).weight
    n = a.shape[0] if rows is None else rows
    if b.shape[0] != n or b.shape[1] != a.shape[1]:
        raise KtupError(f"init_from: table {name!r} has shape {tuple(b.shape)} in the source model, "
                        f"expected ({n}, {a.shape[1]}) (same dataset and embedding_size?)")
    with torch.no_grad():
        a[:n].copy_(b)


class KTUP(KGScoringMixin, TUP):
    """TUP + TransH, preference k bound to relation k, items enhanced by their entities.

    The entity table has one extra row (index ``n_entities``): the zero padding entity of
    unlinked items. It is zeroed after init and in ``constrain_`` and excluded from KG scoring
    and from KG sampling (samplers draw ids below ``n_entities``), so it never moves away from 0.
    """

    name = "ktup"
    uses_kg = True

    def __init__(self, n_users: int, n_items: int, n_entities: int, n_relations: int,
                 item_entity: np.ndarray | torch.Tensor, embedding_size: int = 64, *,
                 induction: str = "soft", norm: str = "l1", combine: str = "sum", unit_normals: bool = True,
                 align_loss: bool = False, margin: float = 1.0, kg_constraint_weight: float = 0.01,
                 gumbel_temperature: float = 1.0, align_weight: float = 1.0, max_norm: float = 0.0,
                 item_bias: bool = False, inference: str = "induced", user_max_norm: float = 0.0,
                 relation_alignment: float = 0.0, alignment_targets=None, entity_rec_grad: bool = True):
        if n_relations <= 0:
            raise KtupError("ktup: the dataset has no KG relations (KTUP binds one preference to each)")
        super().__init__(n_users, n_items, n_relations, embedding_size, induction=induction, norm=norm,
                         unit_normals=unit_normals, gumbel_temperature=gumbel_temperature, max_norm=max_norm,
                         item_bias=item_bias, inference=inference, user_max_norm=user_max_norm)
        self.n_entities, self.n_relations, self.combine = n_entities, n_relations, combine
        # False: the rec loss reaches entity rows only through their values (ĩ = i + stopgrad(e)), so
        # entities are shaped by the KG alone (docs/KG_DIAGNOSIS.md); True is the paper
        self.entity_rec_grad = bool(entity_rec_grad)
        self.use_align_loss, self.align_weight = align_loss, align_weight
        self.margin, self.kg_constraint_weight = margin, kg_constraint_weight
        # last row: the padding entity; padding_idx gives it a zero gradient
        self.entity = nn.Embedding(n_entities + 1, embedding_size, padding_idx=n_entities)
        self.relation = nn.Embedding(n_relations, embedding_size)
        self.relation_norm = nn.Embedding(n_relations, embedding_size)
        for emb in (self.entity, self.relation, self.relation_norm):
            fn.xavier_normalised_(emb.weight)
        ie = torch.as_tensor(np.asarray(item_entity), dtype=torch.long)
        if ie.shape != (n_items,):
            raise KtupError(f"ktup: item_entity has shape {tuple(ie.shape)}, expected ({n_items},)")
        if ((ie >= n_entities) | (ie < -1)).any():
            raise KtupError("ktup: item_entity holds ids outside [-1, n_entities)")
        self.register_buffer("item_entity", torch.where(ie < 0, torch.full_like(ie, n_entities), ie))
        # Relation alignment (models/alignment.py): targets are derived data, rebuilt from the
        # dataset by build(), so they are not part of the checkpoint (non-persistent buffers).
        self.relation_alignment = float(relation_alignment)
        if self.relation_alignment < 0:
            raise ConfigError(f"model.relation_alignment: must be >= 0, got {relation_alignment}")
        empty = (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        for name, arr in zip(("_ra_keys", "_ra_indptr", "_ra_relation", "_ra_weight"),
                             alignment_targets if alignment_targets is not None else empty):
            self.register_buffer(name, torch.as_tensor(arr), persistent=False)
        self.constrain_()

    @classmethod
    def build(cls, config, dataset) -> "KTUP":
        align = float(getattr(config, "relation_alignment", 0.0) or 0.0)
        targets = None
        if align > 0 and len(dataset.train) and dataset.n_relations > 0:
            from ktup.models.alignment import alignment_targets
            targets = alignment_targets(dataset.train.users, dataset.train.items, dataset.kg_train,
                                        dataset.item_entity, dataset.n_items, dataset.n_relations)
        return cls(dataset.n_users, dataset.n_items, dataset.n_entities, dataset.n_relations,
                   dataset.item_entity, config.embedding_size, induction=config.induction, norm=config.norm,
                   combine=config.combine, unit_normals=config.unit_normals, align_loss=config.align_loss,
                   margin=config.margin, kg_constraint_weight=config.kg_constraint_weight,
                   gumbel_temperature=config.gumbel_temperature, max_norm=getattr(config, "max_norm", 0.0),
                   item_bias=getattr(config, "item_bias", False), inference=getattr(config, "inference", "induced"),
                   user_max_norm=getattr(config, "user_max_norm", 0.0),
                   relation_alignment=align, alignment_targets=targets,
                   entity_rec_grad=getattr(config, "entity_rec_grad", True))

    @property
    def preference_relation(self) -> list[int]:
        return list(range(self.n_relations))

    def tables(self) -> dict[str, str]:
        return {**super().tables(), "entity": "entities", "relation": "relations", "relation_norm": "relations"}

    def constrain_(self) -> None:
        """Keep the padding entity at zero (an optimiser's weight decay could otherwise move it);
        with ``max_norm > 0`` also clip user, item and entity rows to the ball."""
        self._clip_rows(("user", "item", "entity"))
        with torch.no_grad():
            self.entity.weight[self.n_entities].zero_()

    def preference_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        P = self.preference.weight + self.relation.weight
        W = self.preference_norm.weight + self.relation_norm.weight
        if self.combine == "mean":
            P, W = P / 2, W / 2
        return P, W

    def item_vectors(self, items=None) -> torch.Tensor:
        if items is None:
            return self.item.weight + self._linked_entities(self.item_entity)
        items = self._ids(items)
        return self.item(items) + self._linked_entities(self.item_entity[items])

    def _linked_entities(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.entity(ids)
        return e if self.entity_rec_grad else e.detach()

    def _rec_extra_loss(self, pos, neg) -> torch.Tensor:
        """Optional alignment of linked items with their entities (RecBole adds it)."""
        if not self.use_align_loss:
            return super()._rec_extra_loss(pos, neg)
        items = torch.cat([pos.reshape(-1), neg.reshape(-1)])
        items = items[self.item_entity[items] < self.n_entities]
        return self.align_weight * fn.align_loss(self.item(items), self.entity(self.item_entity[items]),
                                                 L1_flag=self.norm == "l1")

    def _pair_extra_loss(self, users, pos, u, i_pos) -> torch.Tensor:
        """Relation alignment: cross-entropy of ``softmax(α(u, i⁺))`` against the relations that
        connect the pair to the user's other training items in the KG (mean over pairs with a target)."""
        if self.relation_alignment <= 0 or self._ra_keys.numel() == 0:
            return super()._pair_extra_loss(users, pos, u, i_pos)
        from ktup.models.alignment import batch_targets

        target, has = batch_targets(self._ra_keys, self._ra_indptr, self._ra_relation, self._ra_weight,
                                    users * self.n_items + pos, self.n_relations)
        if not bool(has.any()):
            return super()._pair_extra_loss(users, pos, u, i_pos)
        P, _ = self.preference_tables()
        logp = torch.log_softmax(((u + i_pos) @ P.T)[has], dim=-1)
        return -self.relation_alignment * (target[has].to(logp.dtype) * logp).sum(-1).mean()

    def init_from(self, other: Model) -> "KTUP":
        """Pre-training as the authors did: users, items and preferences from a ``tup`` model;
        entities and relations from a ``transh`` model (or everything from a ``ktup`` model)."""
        if isinstance(other, KTUP):
            TUP.init_from(self, other)
            for name in ("entity", "relation", "relation_norm"):
                _copy_table(self, other, name)
        elif isinstance(other, TUP):
            TUP.init_from(self, other)
        elif other.name == "transh":
            _copy_table(self, other, "entity", rows=self.n_entities)
            _copy_table(self, other, "relation")
            _copy_table(self, other, "relation_norm")
        else:
            raise KtupError(f"ktup: cannot initialise from a {other.name} model "
                            "(tup, transh or ktup)")
        with torch.no_grad():   # an exact copy; only the padding entity is reset (max_norm applies from the first step)
            self.entity.weight[self.n_entities].zero_()
        return self
