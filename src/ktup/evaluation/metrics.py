"""Top-K ranking metrics, vectorised over users.

Input is what a full-ranking evaluator produces: the top-``Kmax`` item ids of each user in
rank order ``(B, Kmax)`` and each user's held-out ("gold") items as a CSR structure. Every
metric is computed for the whole batch with tensor ops (no Python loop per user), for any list
of cut-offs ``K <= Kmax`` from one hit matrix.

Definitions (docs/PROTOCOLS.md): with ``h_r = 1`` when the item at rank ``r`` is gold,
``hits@K = Σ_{r≤K} h_r`` and ``G = |gold|``:

- ``recall@K = hits/G``, ``precision@K = hits/K``, ``hit@K = [hits > 0]``,
  ``f1@K = 2PR/(P+R)`` per user (0 when both are 0);
- ``ndcg@K = DCG/IDCG`` with ``DCG = Σ h_r / log2(r+1)`` and the ideal over ``min(G, K)`` ranks;
- ``mrr@K = 1/rank of the first hit`` (0 without a hit in the top K);
- ``map@K`` as RecBole defines it: ``Σ_r h_r · precision@r / min(G, K)``;
- ``ndcg_ktup@K``: the KTUP authors' variant, DCG divided by the DCG of the *same hits moved
  to the top* (``Σ_{r≤hits} 1/log2(r+1)``), 0 without hits. It is not NDCG (it ignores gold
  items that were missed) and is only reported under its own name.

Users without gold items have no defined value: their per-user entries are NaN and they are
left out of averages (the caller counts them).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from ktup.registry import METRICS as _METRIC_REGISTRY  # noqa: E402

METRICS: tuple[str, ...] = _METRIC_REGISTRY.choices()  # the names live in ktup.registry.METRICS


def valid_metric_for(metric: str, uses_rec: bool) -> str:
    """The validation metric a model is selected on: ``metric`` for a recommendation model; for a
    KG-only model (TransH, TransE) link prediction's ``mrr`` (or ``mr`` when asked), since it
    ranks no items."""
    metric = metric.lower()
    if uses_rec:
        return metric
    return metric.split("@")[0] if metric.split("@")[0] in ("mrr", "mr") else "mrr"


def batch_gold(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Gold items of a batch of users as ``(row (G,), item (G,))`` pairs, rows ascending.

    ``indptr/indices`` is a per-user CSR (items sorted within a user). Vectorised gather: the
    ranges ``[indptr[u], indptr[u+1])`` of all batch users are expanded at once.
    """
    users = np.asarray(users, dtype=np.int64)
    starts = indptr[users]
    counts = indptr[users + 1] - starts                     # (B,)
    rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
    offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    items = indices[np.repeat(starts, counts) + offsets]
    return torch.from_numpy(rows), torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64))


def hit_matrix(topk_items: torch.Tensor, gold_rows: torch.Tensor, gold_items: torch.Tensor, n_items: int) -> torch.Tensor:
    """``(B, Kmax)`` bool: is ``topk_items[b, r]`` one of user b's gold items?

    Membership test with one sorted key array: gold pair ``(b, i)`` ↦ ``b * n_items + i``;
    each top-K entry is looked up by ``searchsorted``. O(B·Kmax·log G), no dense (B, n_items).
    Entries ``< 0`` (padding) are never hits.
    """
    B, kmax = topk_items.shape
    if gold_rows.numel() == 0:
        return torch.zeros(B, kmax, dtype=torch.bool)
    keys, _ = torch.sort(gold_rows.to(torch.int64) * n_items + gold_items.to(torch.int64))  # (G,)
    query = torch.arange(B, dtype=torch.int64).unsqueeze(1) * n_items + topk_items.to(torch.int64).cpu()  # (B, Kmax)
    pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return (keys[pos] == query) & (topk_items.cpu() >= 0)


def _discounts(kmax: int) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))  # (Kmax,)


def ranking_metrics(hits: torch.Tensor, n_gold: torch.Tensor, ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics ``{"recall@10": (B,) float64, ...}`` from a ``(B, Kmax)`` hit matrix.

    ``n_gold`` (B,) is each user's number of gold items; rows with ``n_gold == 0`` get NaN.
    """
    hits = hits.to(torch.float64).cpu()
    n_gold = torch.as_tensor(n_gold, dtype=torch.float64).cpu()
    B, kmax = hits.shape
    ks = [int(k) for k in ks]
    if any(k <= 0 or k > kmax for k in ks):
        raise ValueError(f"cut-offs {ks} must lie in 1..{kmax}")
    disc = _discounts(kmax)                                   # (Kmax,)
    cum_disc = torch.cumsum(disc, 0)                          # ideal DCG for 1..Kmax hits
    positions = torch.arange(1, kmax + 1, dtype=torch.float64)  # (Kmax,)
    cum_hits = torch.cumsum(hits, 1)                          # (B, Kmax)
    dcg = torch.cumsum(hits * disc, 1)                        # (B, Kmax)
    sum_prec = torch.cumsum(hits * cum_hits / positions, 1)   # (B, Kmax) Σ h_r · P@r
    # rank of the first hit (Kmax+1 when none), then the reciprocal up to each cut-off
    first = torch.where(hits.any(1), hits.argmax(1).to(torch.float64) + 1, torch.full((B,), float(kmax + 1), dtype=torch.float64))
    no_gold = n_gold <= 0
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = cum_hits[:, k - 1]                                # (B,)
        recall = h / n_gold.clamp(min=1)
        precision = h / k
        ideal_n = torch.minimum(n_gold, torch.tensor(float(k))).clamp(min=1).long()
        ndcg = dcg[:, k - 1] / cum_disc[ideal_n - 1]
        mrr = torch.where(first <= k, 1.0 / first, torch.zeros_like(first))
        hit = (h > 0).to(torch.float64)
        map_ = sum_prec[:, k - 1] / ideal_n.to(torch.float64)
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
        own_ideal = cum_disc[(h.long() - 1).clamp(min=0)]     # DCG of the same hits at the top
        ndcg_ktup = torch.where(h > 0, dcg[:, k - 1] / own_ideal, torch.zeros_like(h))
        for name, value in (("recall", recall), ("ndcg", ndcg), ("mrr", mrr), ("hit", hit), ("precision", precision),
                            ("map", map_), ("f1", f1), ("ndcg_ktup", ndcg_ktup)):
            out[f"{name}@{k}"] = torch.where(no_gold, torch.full_like(value, float("nan")), value)
    return out


def topk_metrics(topk_items: torch.Tensor, gold_indptr: np.ndarray, gold_indices: np.ndarray, users: Sequence[int],
                 ks: Iterable[int], n_items: int) -> dict[str, torch.Tensor]:
    """Convenience: per-user metrics from top-K item ids and a CSR of gold items."""
    users = np.asarray(users, dtype=np.int64)
    rows, items = batch_gold(gold_indptr, gold_indices, users)
    hits = hit_matrix(topk_items, rows, items, n_items)
    n_gold = torch.from_numpy((gold_indptr[users + 1] - gold_indptr[users]).astype(np.float64))
    return ranking_metrics(hits, n_gold, ks)


def summarise(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over users with a defined value (NaN rows — users without gold — are left out)."""
    out = {}
    for name, values in per_user.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        out[name] = float(v.mean()) if v.size else float("nan")
    return out
