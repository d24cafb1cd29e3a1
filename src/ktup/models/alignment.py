"""Relation alignment targets: which KG relations connect a training pair to the user's history.

``model.relation_alignment > 0`` (a departure from the paper, off by default) adds a term to
KTUP's recommendation loss that ties preference k to relation k: for a training pair (u, i) the
induced distribution ``softmax(α(u, i))`` is pulled (cross-entropy) toward the relations through
which item i shares KG neighbours with u's *other* training items. Each shared neighbour counts
``1 / deg`` (deg = items reaching that neighbour through the relation), so a rare shared
director says more than a genre shared by half the catalogue. Pairs with no such path get no
target and no term.

The targets come from the training interactions and the training KG only (no held-out data),
are computed once, vectorised, and stored as a CSR table over the sorted pair keys
``u · n_items + i``; :func:`batch_targets` gathers a batch's rows as a dense (B, K) tensor.
"""

from __future__ import annotations

import numpy as np
import torch


def _csr_expand(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.shape[0]), lens)
    pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(owner.shape[0])
    return owner, pos


def item_facts(kg: np.ndarray, item_entity: np.ndarray, n_items: int) -> np.ndarray:
    """(F, 3) unique ``(item, relation, neighbour)``: item's entity is either end of a triple."""
    kg = np.asarray(kg, dtype=np.int64).reshape(-1, 3)
    item_entity = np.asarray(item_entity, dtype=np.int64)
    linked = np.flatnonzero(item_entity >= 0)
    if kg.shape[0] == 0 or linked.shape[0] == 0:
        return np.zeros((0, 3), dtype=np.int64)
    n_ent = int(max(kg[:, [0, 2]].max(), item_entity.max())) + 1
    order = linked[np.argsort(item_entity[linked], kind="stable")]
    indptr = np.zeros(n_ent + 1, dtype=np.int64)
    np.cumsum(np.bincount(item_entity[order], minlength=n_ent), out=indptr[1:])
    ends = np.concatenate([kg, kg[:, [2, 1, 0]]], axis=0)
    owner, pos = _csr_expand(indptr, ends[:, 0])
    facts = np.stack([order[pos], ends[owner, 1], ends[owner, 2]], axis=1)
    return np.unique(facts, axis=0) if facts.shape[0] else facts.reshape(0, 3)


def alignment_targets(users: np.ndarray, items: np.ndarray, kg: np.ndarray, item_entity: np.ndarray,
                      n_items: int, n_relations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targets of the training pairs ``(users, items)``: ``(keys, indptr, relation, weight)``.

    ``keys`` (P,) sorted unique pair keys ``u · n_items + i`` of the pairs that have a target;
    row p of the CSR (``indptr``, ``relation``, ``weight``) is its distribution over relations
    (weights sum to 1). Vectorised over facts; memory ~ Σ_pairs facts(item).
    """
    pair_key = np.unique(np.asarray(users, dtype=np.int64) * int(n_items) + np.asarray(items, dtype=np.int64))
    users, items = pair_key // int(n_items), pair_key % int(n_items)    # unique pairs, in key order
    empty = (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    facts = item_facts(kg, item_entity, n_items)
    if facts.shape[0] == 0 or users.shape[0] == 0:
        return empty
    E = int(facts[:, 2].max()) + 1
    R = int(n_relations)
    f_ptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(facts[:, 0], minlength=n_items), out=f_ptr[1:])
    rn = facts[:, 1] * E + facts[:, 2]
    deg_keys, deg = np.unique(rn, return_counts=True)                  # items reaching (r, nb)
    # (user, r, nb) → how many of the user's training items reach nb through r
    own, pos = _csr_expand(f_ptr, items)
    q = users[own] * (R * E) + rn[pos]
    keys, counts = np.unique(q, return_counts=True)
    c = counts[np.searchsorted(keys, q)] - 1                           # the pair's own item left out
    w = c / deg[np.searchsorted(deg_keys, rn[pos])]
    hit = c > 0
    cell = own[hit] * R + facts[pos[hit], 1]                           # (pair, relation), sorted by pair
    cells, inv = np.unique(cell, return_inverse=True)
    mass = np.bincount(inv, weights=w[hit])
    cp, cr = cells // R, cells % R
    total = np.bincount(cp, weights=mass, minlength=users.shape[0])
    rows = np.flatnonzero(total > 0)                                   # pairs with a target, key order
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(cp, minlength=users.shape[0])[rows], out=indptr[1:])
    return pair_key[rows], indptr, cr.astype(np.int64), (mass / total[cp]).astype(np.float32)


def batch_targets(keys: torch.Tensor, indptr: torch.Tensor, relation: torch.Tensor, weight: torch.Tensor,
                  pair_keys: torch.Tensor, n_relations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets (B, K), has_target (B,) bool)`` for a batch's pair keys (vectorised gather)."""
    B = pair_keys.shape[0]
    out = torch.zeros(B, n_relations, dtype=weight.dtype, device=weight.device)
    if keys.numel() == 0:
        return out, torch.zeros(B, dtype=torch.bool, device=weight.device)
    at = torch.searchsorted(keys, pair_keys).clamp_max(keys.numel() - 1)
    has = keys[at] == pair_keys
    rows = at[has]
    starts, ends = indptr[rows], indptr[rows + 1]
    lens = ends - starts
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=keys.device), lens)
    pos = starts[owner] + (torch.arange(owner.numel(), device=keys.device)
                           - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens))
    b = torch.nonzero(has, as_tuple=False)[:, 0][owner]
    out.index_put_((b, relation[pos]), weight[pos], accumulate=True)
    return out, has
