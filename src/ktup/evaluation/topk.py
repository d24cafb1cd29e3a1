"""Deterministic top-K selection with a fair tie policy: score descending, ties in a seeded
pseudo-random order per user.

``torch.topk`` says nothing about which of several equal scores it keeps, so the order must be
made total. Breaking ties by the lower item id would be total but unfair: ids follow first
appearance in the data, which tracks popularity, so a scorer that ties everything (a constant)
would recommend the most popular items and score ~3x a random scorer on ml-100k. Here ties go
by a key hashed from ``(tie_seed, user, item)``: every user sees the tied items in an
independent uniformly random order, so a constant scorer gets a random scorer's expected
metrics. The key is a pure function of (seed, user, item) — not a generator state — so the
result does not depend on batching, chunking or device, evaluating twice gives identical
lists, and the top K of a union of chunks equals the top K of the chunks' top Ks. The total
order is (score desc, key asc, id asc); the id only matters if two 62-bit keys collide.

Cost: keys are computed for the (B, K) winners only, plus, for the rare rows where a tie
straddles the K-th place, over that row's items — real models almost never pay for it.
"""

from __future__ import annotations

from typing import Optional

import torch

DEFAULT_TIE_SEED = 0

_M62 = (1 << 62) - 1
_SIGN = 1 << 64


def _s64(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch stores (same bits)."""
    x &= _SIGN - 1
    return x - _SIGN if x >= 1 << 63 else x


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_C1 = _s64(0xBF58476D1CE4E5B9)
_C2 = _s64(0x94D049BB133111EB)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 (wrapping multiplies; masked shifts act as logical ones)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _C1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _C2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def tie_keys(users: torch.Tensor, items: torch.Tensor, seed: int = DEFAULT_TIE_SEED) -> torch.Tensor:
    """``(B, C)`` int64 keys in ``[0, 2**62)`` for users ``(B,)`` × items ``(B, C)`` or ``(C,)``:
    a hash of (seed, user, item), uniform and independent across users and items."""
    u = users.to(torch.int64).view(-1, 1)
    i = items.to(torch.int64)
    if i.dim() == 1:
        i = i.view(1, -1)
    x = (u << 32) + i + _s64((int(seed) + 1) * 0x9E3779B97F4A7C15)
    return _mix(x * _GOLDEN) & _M62


def topk_chunk(scores: torch.Tensor, k: int, offset: int = 0, users: Optional[torch.Tensor] = None,
               seed: int = DEFAULT_TIE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores`` (B, C) under (score desc, tie key asc, id asc).

    ``users`` (B,) are the rows' user ids (the tie keys depend on them; default: all 0, one
    seeded order of the items shared by every row). Returns ``(values (B, k), ids (B, k))`` with
    ``ids = column + offset``, in rank order. The common case (no tie straddling the k-th place)
    costs one ``topk`` of k+1; rows with a straddling tie pick the tied items with the lowest
    keys. NaN scores (which ``topk`` ranks first) raise ``FloatingPointError``.
    """
    B, C = scores.shape
    if users is None:
        users = torch.zeros(B, dtype=torch.int64, device=scores.device)
    users = users.to(scores.device)
    k = min(k, C)
    if k <= 0:
        z = scores.new_zeros(B, 0)
        return z, z.to(torch.int64)
    # one extra place tells whether a tie straddles the cut: the (k+1)-th equals the k-th
    extra = 1 if k < C else 0
    vals, cols = torch.topk(scores, k + extra, dim=1, largest=True, sorted=True)   # (B, k+1)
    if torch.isnan(vals).any():
        raise FloatingPointError("NaN scores")
    if extra:
        tied_rows = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
        vals, cols = vals[:, :k].contiguous(), cols[:, :k].contiguous()
        if tied_rows.numel():
            _repair_straddling(scores, vals, cols, tied_rows, k, offset, users, seed)
    return _order(vals, cols + offset, users, seed)


def _repair_straddling(scores, vals, cols, tied_rows, k: int, offset: int, users, seed: int) -> None:
    """For rows whose k-th value is tied with values left out: keep every value above it and,
    of the tied, the ones with the lowest keys. In place on ``vals``/``cols``; row blocks bound
    the (T, C) int64 temporaries to ~32 MB each."""
    C = scores.shape[1]
    cols_all = torch.arange(offset, offset + C, dtype=torch.int64, device=scores.device)
    step = max(1, (1 << 22) // max(1, C))
    for r0 in range(0, tied_rows.numel(), step):
        rows = tied_rows[r0:r0 + step]
        s = scores[rows]                                                  # (T, C)
        t = vals[rows, k - 1:k]                                           # (T, 1) the k-th value
        key = tie_keys(users[rows], cols_all, seed)                      # (T, C)
        key = torch.where(s > t, torch.full_like(key, -1), torch.where(s == t, key, torch.full_like(key, _M62 + 1)))
        sel = torch.topk(key, k, dim=1, largest=False).indices           # all above t + the k - n_gt lowest-key tied
        vals[rows] = torch.gather(s, 1, sel)
        cols[rows] = sel


def _order(vals: torch.Tensor, ids: torch.Tensor, users: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by (value desc, key asc, id asc): three stable sorts, least significant first."""
    ids, p = torch.sort(ids, dim=1, stable=True)
    vals = torch.gather(vals, 1, p)
    keys, q = torch.sort(tie_keys(users, ids, seed), dim=1, stable=True)
    vals, ids = torch.gather(vals, 1, q), torch.gather(ids, 1, q)
    vals, r = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(ids, 1, r)


def merge_topk(parts: list[tuple[torch.Tensor, torch.Tensor]], k: int, users: Optional[torch.Tensor] = None,
               seed: int = DEFAULT_TIE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` over several ``(values, ids)`` candidate lists of the same rows and order."""
    if len(parts) == 1:
        vals, ids = parts[0]
        return vals[:, :k], ids[:, :k]
    vals = torch.cat([p[0] for p in parts], 1)
    ids = torch.cat([p[1] for p in parts], 1)
    if users is None:
        users = torch.zeros(vals.shape[0], dtype=torch.int64, device=vals.device)
    vals, ids = _order(vals, ids, users.to(vals.device), seed)
    return vals[:, :k], ids[:, :k]
