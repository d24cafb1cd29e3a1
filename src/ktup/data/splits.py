"""Seeded, vectorised train/valid/test splits of interactions and of KG triples.

Every function returns three sorted index arrays ``(train, valid, test)`` into the rows it was
given, so side arrays (ratings, timestamps, the generator's planted relations) are split by the
same indexing and stay aligned. Per-user splits group rows by a stable sort instead of a Python
loop over users.

Rounding follows RecBole's ``split_by_ratio`` exactly (``valid = int(r_v·n)``,
``test = int(r_t·n)``, train takes the rest; a user whose share of a held-out part is in (0, 1)
still gets one row there while train keeps at least one), so ``random`` with 0.8/0.1/0.1 gives
RecBole's split sizes; the KTUP authors' 70/10/20 is the same function with other ratios.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from ktup.errors import KtupError
from ktup.registry import SPLITS

Parts = tuple[np.ndarray, np.ndarray, np.ndarray]

METHODS = SPLITS.choices()  # the names live in ktup.registry.SPLITS


def _ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray([float(x) for x in ratios], dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise KtupError(f"split ratios: expected three non-negative numbers (train, valid, test), got {list(ratios)}")
    return r / r.sum()


def ratio_counts(n: np.ndarray, ratios: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows per part for groups of sizes ``n`` — RecBole's rounding, vectorised over groups."""
    r = _ratios(ratios)
    n = np.asarray(n, dtype=np.int64)
    raw_v, raw_t = r[1] * n, r[2] * n
    nv = np.floor(raw_v).astype(np.int64)
    nt = np.floor(raw_t).astype(np.int64)
    ntr = n - nv - nt
    go = ntr > 1                                   # RecBole stops as soon as train is down to one row
    bump_t = go & (raw_t > 0) & (raw_t < 1)
    nt += bump_t
    ntr -= bump_t
    go &= ntr > 1
    bump_v = go & (raw_v > 0) & (raw_v < 1)
    nv += bump_v
    ntr -= bump_v
    return ntr, nv, nt


def _by_rank(order: np.ndarray, rank: np.ndarray, us: np.ndarray, counts: np.ndarray, ratios) -> Parts:
    """Rows in ``order`` (grouped by user ``us``, ``rank`` within the user) → parts by ratio."""
    ntr, nv, _ = ratio_counts(counts, ratios)             # per user, then gathered per row
    a, b = ntr[us], (ntr + nv)[us]
    part = np.empty(order.shape[0], dtype=np.int8)
    part[order] = (rank >= a).astype(np.int8) + (rank >= b)
    return _parts(part)


def _parts(part: np.ndarray) -> Parts:
    """Sorted row indices of parts 0, 1, 2 (linear, no sort)."""
    return tuple(np.flatnonzero(part == k) for k in range(3))  # type: ignore[return-value]


def random_split(users: np.ndarray, ratios: Sequence[float], seed: int) -> Parts:
    """Per user: shuffle (seeded) and cut by ``ratios`` (RecBole's ``RS`` grouped by user)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    perm = rng.permutation(users.shape[0])
    order = perm[np.argsort(users[perm], kind="stable")]   # grouped by user, random within a user
    us = users[order]
    counts = np.bincount(us, minlength=int(us.max()) + 1 if us.size else 0)
    rank = np.arange(us.shape[0], dtype=np.int64) - (np.cumsum(counts) - counts)[us]
    return _by_rank(order, rank, us, counts, ratios)


def temporal_split(users: np.ndarray, timestamps: np.ndarray, ratios: Sequence[float]) -> Parts:
    """Per user: earliest rows train, latest test (ties keep file order)."""
    n = users.shape[0]
    order = np.lexsort((np.arange(n), timestamps, users))
    us = users[order]
    counts = np.bincount(us, minlength=int(us.max()) + 1 if n else 0)
    rank = np.arange(n) - (np.cumsum(counts) - counts)[us]
    return _by_rank(order, rank, us, counts, ratios)


def loo_split(users: np.ndarray, seed: int, timestamps: Optional[np.ndarray] = None) -> Parts:
    """Leave-one-out: per user the last row (by time, else at random) is test, the one before
    valid; train keeps at least one row (users with 2 rows get no valid row, with 1 no test)."""
    n = users.shape[0]
    if timestamps is not None:
        order = np.lexsort((np.arange(n), timestamps, users))
    else:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
        order = np.lexsort((rng.random(n), users))
    us = users[order]
    counts = np.bincount(us, minlength=int(us.max()) + 1 if n else 0)
    rank = np.arange(n) - (np.cumsum(counts) - counts)[us]
    size = counts[us]
    from_end = size - rank                          # 1 = last row of the user
    ps = np.zeros(n, dtype=np.int8)
    ps[(from_end == 1) & (size >= 2)] = 2
    ps[(from_end == 2) & (size >= 3)] = 1
    part = np.empty(n, dtype=np.int8)
    part[order] = ps
    return _parts(part)


def split_interactions(users: np.ndarray, n_users: int, method: str, ratios: Sequence[float], seed: int,
                       timestamps: Optional[np.ndarray] = None) -> Parts:
    """Dispatch on ``method`` (``random``/``ratio_per_user``, ``loo``, ``temporal``)."""
    if method in ("random", "ratio_per_user"):
        return random_split(users, ratios, seed)
    if method == "loo":
        return loo_split(users, seed, timestamps)
    if method == "temporal":
        if timestamps is None:
            raise KtupError("data.split=temporal needs timestamps, and this dataset has none (use random or loo)")
        return temporal_split(users, timestamps, ratios)
    if method == "given":
        raise KtupError("data.split=given needs a pre-split dataset")
    raise KtupError(f"unknown split method {method!r} (one of {', '.join(METHODS)})")


def split_kg(triples: np.ndarray, n_entities: int, n_relations: int, ratios: Sequence[float], seed: int) -> Parts:
    """Random split of triples for link prediction, then move back into train the fewest triples
    needed so that every entity and relation of valid/test also occurs in train (one triple per
    uncovered entity or relation, chosen at random; two array passes suffice)."""
    m = triples.shape[0]
    if m == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    perm = rng.permutation(m)
    ntr, nv, _ = (int(x[0]) for x in ratio_counts(np.array([m]), ratios))
    part = np.empty(m, dtype=np.int8)
    part[perm[:ntr]] = 0
    part[perm[ntr:ntr + nv]] = 1
    part[perm[ntr + nv:]] = 2
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    rank = np.empty(m, dtype=np.int64)
    rank[perm] = np.arange(m)                     # random priority among offenders
    for _ in range(4):
        tr = part == 0
        e_cov = np.zeros(n_entities, dtype=bool)
        e_cov[h[tr]] = True
        e_cov[t[tr]] = True
        r_cov = np.zeros(n_relations, dtype=bool)
        r_cov[r[tr]] = True
        held = np.flatnonzero(~tr)
        bh, bt, br = ~e_cov[h[held]], ~e_cov[t[held]], ~r_cov[r[held]]
        if not (bh.any() or bt.any() or br.any()):
            break
        # (thing, triple) pairs for every uncovered thing; keep the highest-priority triple per thing
        things = np.concatenate([h[held][bh], t[held][bt], n_entities + r[held][br]])
        owners = np.concatenate([held[bh], held[bt], held[br]])
        o = np.lexsort((rank[owners], things))
        things, owners = things[o], owners[o]
        first = np.ones(things.size, dtype=bool)
        first[1:] = things[1:] != things[:-1]
        part[owners[first]] = 0
    return tuple(np.flatnonzero(part == k) for k in range(3))  # type: ignore[return-value]


def split_hash(dataset) -> str:
    """sha256 over the split arrays (interactions then KG), identifying a split exactly."""
    h = hashlib.sha256()
    for name in ("train", "valid", "test"):
        inter = getattr(dataset, name)
        h.update(name.encode())
        h.update(np.ascontiguousarray(inter.users, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(inter.items, dtype="<i8").tobytes())
    for name in ("kg_train", "kg_valid", "kg_test"):
        h.update(name.encode())
        h.update(np.ascontiguousarray(getattr(dataset, name), dtype="<i8").tobytes())
    return h.hexdigest()
