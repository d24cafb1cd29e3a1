"""The RecBole-style interface of our KTUP/TUP (``forward``, ``calculate_loss``, ``predict``, …).

People who know RecBole's ``KTUP`` can drive ours with the same calls; everything here is a thin
adapter over the model's own paths (``rec_loss``, ``kg_loss``, ``score_pairs``,
``score_all_items``), so both interfaces always agree. Differences from RecBole, on purpose:
scores are deterministic at inference (no Gumbel noise), ``calculate_loss`` returns one scalar
(the rec-step loss; RecBole returns a tuple of parts), and ``full_sort_predict`` exists (the
decomposed fast path). Scores have RecBole's sign: higher is better (the negated distance).
See docs/API.md.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ktup.errors import KtupError
from ktup.models import functional as fn
from ktup.models.functional import align_loss, orthogonal_loss  # noqa: F401  (PEP 8 names)

__all__ = ["RecBoleInterface", "orthogonalLoss", "alignLoss", "orthogonal_loss", "align_loss"]


def orthogonalLoss(rel_embeddings: torch.Tensor, norm_embeddings: torch.Tensor) -> torch.Tensor:  # noqa: N802
    """RecBole's name for :func:`ktup.models.functional.orthogonal_loss` (``Σ (w·r)²/‖r‖²``)."""
    return orthogonal_loss(rel_embeddings, norm_embeddings)


def alignLoss(emb1: torch.Tensor, emb2: torch.Tensor, L1_flag: bool = False) -> torch.Tensor:  # noqa: N802,N803
    """RecBole's name for :func:`ktup.models.functional.align_loss` (mean L1 / squared L2 distance)."""
    return align_loss(emb1, emb2, L1_flag)


def _field(interaction: Mapping[str, Any] | Any, key: str) -> torch.Tensor:
    try:
        value = interaction[key]
    except (KeyError, TypeError, IndexError):
        raise KtupError(f"interaction: missing field {key!r}") from None
    return torch.as_tensor(value, dtype=torch.long)


class RecBoleInterface:
    """Mixin for TUP/KTUP: RecBole's method names over our own computations."""

    USER_ID = "user_id"
    ITEM_ID = "item_id"
    NEG_ITEM_ID = "neg_item_id"
    HEAD_ENTITY_ID = "head_id"
    RELATION_ID = "relation_id"
    TAIL_ENTITY_ID = "tail_id"
    NEG_TAIL_ENTITY_ID = "neg_tail_id"

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(u⊥ (B, d), p* (B, d), ĩ⊥ (B, d))``: the projected user, the induced preference vector and
        the projected item, so that ``f = ‖u⊥ + p* − ĩ⊥‖``. Hard induction samples ST-Gumbel in
        train mode and takes the argmax in eval mode, like ``rec_loss``. ``predict`` equals
        ``−f`` of these in eval mode unless the model scores by the expected distance
        (``inference=expected``, the default for hard induction): then it is the
        ``softmax(α)``-weighted mean of the K preferences' distances."""
        P, W = self.preference_tables()
        u = self.user(torch.as_tensor(user, dtype=torch.long))
        i = self.item_vectors(torch.as_tensor(item, dtype=torch.long))
        a = self._weights((u + i) @ P.T, noisy=self.training)                 # (B, K)
        w_hat = fn.normal(a @ W, self.unit_normals)                           # (B, d)
        return fn.project(u, w_hat), a @ P, fn.project(i, w_hat)

    def calculate_loss(self, interaction) -> torch.Tensor:
        """The rec-step loss (BPR, plus alignment when enabled) of ``user_id``, ``item_id``,
        ``neg_item_id`` ((B,) or (B, n_neg)) — the same value as ``rec_loss``."""
        return self.rec_loss(_field(interaction, self.USER_ID), _field(interaction, self.ITEM_ID),
                             _field(interaction, self.NEG_ITEM_ID))

    def calculate_kg_loss(self, interaction) -> torch.Tensor:
        """The KG-step loss of ``head_id``, ``relation_id``, ``tail_id`` with tail corruptions
        ``neg_tail_id`` ((B,) or (B, n_neg)) — ``kg_loss`` with the heads kept."""
        h, r = _field(interaction, self.HEAD_ENTITY_ID), _field(interaction, self.RELATION_ID)
        t, nt = _field(interaction, self.TAIL_ENTITY_ID), _field(interaction, self.NEG_TAIL_ENTITY_ID)
        nh = h if nt.dim() == 1 else h[:, None].expand_as(nt)
        return self.kg_loss(h, r, t, nh, nt)

    def predict(self, interaction) -> torch.Tensor:
        """(B,) scores of the (``user_id``, ``item_id``) pairs; higher is better; deterministic."""
        return self.score_pairs(_field(interaction, self.USER_ID), _field(interaction, self.ITEM_ID))

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """(B · n_items,) scores of every ``user_id`` against all items, flattened row-major like
        RecBole (``.view(B, -1)`` recovers the matrix); computed by the decomposed fast path."""
        return self.score_all_items(_field(interaction, self.USER_ID)).reshape(-1)

    @staticmethod
    def st_gumbel_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Straight-through Gumbel-softmax (see :func:`ktup.models.functional.st_gumbel_softmax`)."""
        return fn.st_gumbel_softmax(logits, temperature)

    @staticmethod
    def convert_to_one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Float one-hot: (…) → (…, num_classes)."""
        return fn.convert_to_one_hot(indices, num_classes)
