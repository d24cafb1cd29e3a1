"""Pieces shared by the translation models: projections, distances, the straight-through
Gumbel-softmax and the losses. Pure functions on tensors, no parameters.

Distances are *distances* (lower is better); the models negate them into scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Guard for divisions by a norm that may be zero (a zero normal, a zero relation vector).
EPS = 1e-12


# ------------------------------------------------------------------ geometry
def unit(w: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``w / ‖w‖`` along ``dim``; a zero vector stays zero instead of becoming NaN."""
    return w / w.norm(dim=dim, keepdim=True).clamp_min(EPS)


def normal(w: torch.Tensor, unit_normals: bool = True) -> torch.Tensor:
    """The normal actually used for projecting: unit (the spec) or free (authors' code, RecBole)."""
    return unit(w) if unit_normals else w


def project(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Projection onto the hyperplane with normal ``w``: ``x − (w·x) w`` (broadcasts over leading dims).

    ``w`` must already be the normal to use (see :func:`normal`); with a unit ``w`` this is the
    orthogonal projection, with a free ``w`` it is the authors' formula.
    """
    return x - (x * w).sum(-1, keepdim=True) * w


def distance(x: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """``‖x‖₁`` (``norm="l1"``) or the squared L2 norm ``‖x‖²`` (``"l2"``) over the last dim."""
    if norm == "l1":
        return x.abs().sum(-1)
    if norm == "l2":
        return (x * x).sum(-1)
    raise ValueError(f"unknown norm {norm!r} (l1, l2)")


# ------------------------------------------------------- discrete induction
def convert_to_one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot of ``indices`` (any shape ``S``) → ``S + (num_classes,)``."""
    return F.one_hot(indices.long(), num_classes).to(torch.get_default_dtype())


def gumbel_noise(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel samples ``−log(−log U)``, U uniform in (0, 1) (clamped away from 0 and 1)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    tiny = torch.finfo(like.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def st_gumbel_softmax(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Straight-through Gumbel-softmax over the last dim.

    Forward: exactly the one-hot of ``argmax softmax((logits + g) / τ)``. Backward: the gradient of
    the soft sample ``softmax((logits + g) / τ)`` (the hard/soft difference is detached), so the
    chosen preference is discrete in the score while every preference still gets a gradient.
    """
    g = gumbel_noise(logits.shape, logits, generator)
    soft = torch.softmax((logits + g) / temperature, dim=-1)
    hard = convert_to_one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return (hard - soft).detach() + soft


# ------------------------------------------------------------------ losses
def bpr_loss(pos_dist: torch.Tensor, neg_dist: torch.Tensor) -> torch.Tensor:
    """``mean −log σ(f(u,i⁻) − f(u,i⁺))`` on distances (lower = better), written as
    ``softplus(f⁺ − f⁻)`` so it never overflows. ``pos_dist`` broadcasts against ``neg_dist``."""
    return F.softplus(pos_dist - neg_dist).mean()


def bpr_loss_scores(pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
    """BPR on scores (higher = better, e.g. dot products): ``mean softplus(s⁻ − s⁺)``."""
    return F.softplus(neg_score - pos_score).mean()


def bpr_loss_dot(u: torch.Tensor, pos_vec: torch.Tensor, neg_vec: torch.Tensor) -> torch.Tensor:
    """BPR on dot-product scores: ``u`` and ``pos_vec`` are ``(B, d)``; ``neg_vec`` is ``(B, d)`` (one
    negative per positive) or ``(B, n, d)`` (n negatives each)."""
    pos = (u * pos_vec).sum(-1)
    if neg_vec.dim() == 3:
        return bpr_loss_scores(pos[:, None], (u[:, None] * neg_vec).sum(-1))
    return bpr_loss_scores(pos, (u * neg_vec).sum(-1))


def margin_ranking_loss(pos_dist: torch.Tensor, neg_dist: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``mean max(0, f(pos) − f(neg) + γ)`` on distances; ``pos_dist`` broadcasts against ``neg_dist``."""
    return torch.relu(pos_dist - neg_dist + margin).mean()


def orthogonal_loss(rel_embeddings: torch.Tensor, norm_embeddings: torch.Tensor) -> torch.Tensor:
    """TransH's orthogonality constraint ``Σ (w_r·r)² / ‖r‖²`` over rows (a zero ``r`` adds 0)."""
    dot = (norm_embeddings * rel_embeddings).sum(-1)
    sq = (rel_embeddings * rel_embeddings).sum(-1)
    return (dot * dot / sq.clamp_min(EPS)).sum()


def entity_norm_loss(entity_embeddings: torch.Tensor) -> torch.Tensor:
    """TransH's soft norm constraint ``Σ max(‖e‖² − 1, 0)`` over rows."""
    return torch.relu((entity_embeddings * entity_embeddings).sum(-1) - 1.0).sum()


def align_loss(emb1: torch.Tensor, emb2: torch.Tensor, L1_flag: bool = False) -> torch.Tensor:  # noqa: N803
    """Mean distance between paired rows (L1, or squared L2): pulls an item towards its entity."""
    diff = emb1 - emb2
    d = diff.abs().sum(-1) if L1_flag else (diff * diff).sum(-1)
    return d.mean() if d.numel() else diff.sum() * 0.0


def xavier_normalised_(weight: torch.Tensor) -> torch.Tensor:
    """Xavier-uniform init, then every row scaled to unit L2 norm (the spec's initialisation)."""
    with torch.no_grad():
        torch.nn.init.xavier_uniform_(weight)
        weight.copy_(unit(weight))
    return weight


# ------------------------------------------------------------------ graphs
def item_node_rows(item_entity, n_entities: int) -> torch.Tensor:
    """Node row of every item: its entity, or ``n_entities + k`` for the k-th unlinked item."""
    import numpy as np

    ie = np.asarray(item_entity, dtype=np.int64)
    unlinked = ie < 0
    rows = ie.copy()
    rows[unlinked] = n_entities + np.arange(int(unlinked.sum()), dtype=np.int64)
    return torch.as_tensor(rows, dtype=torch.long)
