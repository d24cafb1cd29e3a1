"""Deterministic top-K selection: score descending, ties broken by the lower item id.

``torch.topk`` is a partial sort but says nothing about which of several equal scores it
keeps, so chunked and unchunked evaluation (or two runs) could disagree on tied items. Here the
order is total — (score desc, id asc) — so the result is one well-defined list, and the top K
of a union of chunks equals the top K of the chunks' top Ks.
"""

from __future__ import annotations

import torch


def topk_chunk(scores: torch.Tensor, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores`` (B, C) under (score desc, column asc).

    Returns ``(values (B, k), ids (B, k))`` with ``ids = column + offset``, in rank order.
    The common case (no tie straddling the k-th place) costs one ``topk`` of k+1; rows with a
    straddling tie are repaired by picking the lowest columns among the tied. NaN scores (which
    ``topk`` ranks first) raise ``FloatingPointError``.
    """
    B, C = scores.shape
    k = min(k, C)
    # one extra place tells whether a tie straddles the cut: the (k+1)-th equals the k-th
    extra = 1 if k < C else 0
    vals, cols = torch.topk(scores, k + extra, dim=1, largest=True, sorted=True)   # (B, k+1)
    if torch.isnan(vals).any():
        raise FloatingPointError("NaN scores")
    if extra:
        tied_rows = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
        vals, cols = vals[:, :k].contiguous(), cols[:, :k].contiguous()
    else:
        tied_rows = vals.new_zeros(0, dtype=torch.long)
    if tied_rows.numel():
        s = scores[tied_rows]                                                # (T, C)
        t = vals[tied_rows, k - 1:k]                                         # (T, 1) the k-th value
        n_gt = (s > t).sum(1, keepdim=True)
        eq = s == t
        take = (s > t) | (eq & (torch.cumsum(eq.to(torch.int32), 1) <= (k - n_gt)))
        sel = torch.nonzero(take)[:, 1].view(-1, k)                           # (T, k) ascending columns
        vals[tied_rows] = torch.gather(s, 1, sel)
        cols[tied_rows] = sel
    return _order(vals, cols + offset)


def _order(vals: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by (value desc, id asc): a stable sort by id, then a stable sort by value."""
    ids_sorted, p = torch.sort(ids, dim=1, stable=True)
    vals = torch.gather(vals, 1, p)
    vals, q = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(ids_sorted, 1, q)


def merge_topk(parts: list[tuple[torch.Tensor, torch.Tensor]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` over several ``(values, ids)`` candidate lists with the same total order."""
    if len(parts) == 1:
        vals, ids = parts[0]
        return vals[:, :k], ids[:, :k]
    vals = torch.cat([p[0] for p in parts], 1)
    ids = torch.cat([p[1] for p in parts], 1)
    vals, ids = _order(vals, ids)
    return vals[:, :k], ids[:, :k]
