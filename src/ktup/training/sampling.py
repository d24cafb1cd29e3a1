"""Negative sampling, vectorised and seeded.

Both samplers draw *exactly* uniformly from the complement of a known set (the user's training
items; the known heads/tails of a (relation, tail)/(head, relation) pair) instead of rejection
sampling: no rounds to bound, no positive ever slips through, and the cost per sample is one
``searchsorted`` — the same as a rejection round's membership test.

The trick: for a group (a user) with sorted known members ``p_0 < p_1 < …``, ``q_k = p_k − k`` is
the number of free candidates before ``p_k``, so the j-th free candidate (0-based) is
``j + #{k : q_k ≤ j}``. Concatenating every group's ``q`` with an offset ``group × (n + 1)`` gives
one sorted array, and the count is a single ``searchsorted`` for the whole batch.

A group whose every candidate is known (a user who interacted with every item) has no negative;
for it the sampler falls back to a uniform candidate (documented, and counted in ``n_saturated``).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from ktup.errors import KtupError
from ktup.registry import KG_SAMPLERS


def _unique_int(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values by sort + drop repeats (numpy 2.x's plain np.unique hashes first and
    is ~20x slower on large int64 arrays)."""
    a = np.sort(np.asarray(a).reshape(-1))
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def _generator(seed: Optional[int], device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g


class ComplementSampler:
    """Uniform draws from ``{0..n_candidates−1} \\ known(group)`` for many groups at once."""

    def __init__(self, group_keys: np.ndarray, members: np.ndarray, n_candidates: int, device="cpu"):
        n = int(n_candidates)
        if n <= 0:
            raise KtupError("negative sampling: there are no candidates to sample from")
        group_keys = np.asarray(group_keys, dtype=np.int64)
        members = np.asarray(members, dtype=np.int64)
        if members.size and (members.min() < 0 or members.max() >= n):
            raise KtupError(f"negative sampling: known ids outside [0, {n})")
        order = np.lexsort((members, group_keys))                          # by group, then member
        g_sorted, m_sorted = group_keys[order], members[order]
        keep = np.ones(order.shape[0], dtype=bool)
        keep[1:] = (g_sorted[1:] != g_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])   # drop duplicates
        pairs = np.stack([g_sorted[keep], m_sorted[keep]], 1)                 # (M, 2) sorted, unique
        groups, starts, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
        rank = np.arange(pairs.shape[0], dtype=np.int64) - np.repeat(starts, counts)   # k within the group
        gidx = np.repeat(np.arange(groups.shape[0], dtype=np.int64), counts)
        self.n = n
        self.device = torch.device(device)
        self.groups = torch.as_tensor(groups, device=self.device)                       # (G,) sorted keys
        self.starts = torch.as_tensor(starts, device=self.device)                       # (G,)
        self.counts = torch.as_tensor(counts, device=self.device)                       # (G,)
        self.q = torch.as_tensor(gidx * (n + 1) + (pairs[:, 1] - rank), device=self.device)  # (M,) sorted
        self.n_saturated = int((counts >= n).sum())

    def _locate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group index (G where absent) and number of known members of each query key."""
        if self.groups.numel() == 0:
            return torch.zeros_like(keys), torch.zeros_like(keys)
        gi = torch.searchsorted(self.groups, keys).clamp_max(self.groups.numel() - 1)
        present = self.groups[gi] == keys
        return gi, torch.where(present, self.counts[gi], torch.zeros_like(gi))

    def sample(self, keys: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """(B, n) candidates, uniform over each key's complement (uniform over all when it is empty)."""
        keys = keys.to(self.device, torch.long)
        gi, deg = self._locate(keys)                                            # (B,), (B,)
        free = (self.n - deg).clamp_min(0)
        span = torch.where(free > 0, free, torch.full_like(free, self.n))      # saturated: any candidate
        u = torch.rand((keys.shape[0], n), generator=generator, device=self.device, dtype=torch.float64)
        j = (u * span[:, None]).long().clamp_max(span[:, None] - 1)            # (B, n) j-th free candidate
        if self.q.numel() == 0:
            return j
        below = torch.searchsorted(self.q, gi[:, None] * (self.n + 1) + j, right=True) - self.starts[gi][:, None]
        shift = torch.where((deg > 0) & (free > 0), torch.ones_like(deg), torch.zeros_like(deg))[:, None]
        return j + below.clamp_min(0) * shift


class NegativeItemSampler:
    """Items a user has not interacted with in training, uniformly.

    ``NegativeItemSampler(dataset)`` or ``NegativeItemSampler(train_interactions, n_items)``;
    ``sample(users, n=None, generator=None)`` → (B,) when n == 1 else (B, n), int64 on ``device``.
    """

    def __init__(self, train, n_items: Optional[int] = None, num_negatives: int = 1, *,
                 seed: Optional[int] = None, device="cpu"):
        inter = getattr(train, "train", train)              # a KGDataset or its Interactions
        self.n_items = int(n_items if n_items is not None else inter.n_items)
        self.num_negatives = int(num_negatives)
        self.device = torch.device(device)
        self._complement = ComplementSampler(inter.users, inter.items, self.n_items, self.device)
        self.generator = _generator(seed, self.device)

    @property
    def n_saturated(self) -> int:
        """Users who interacted with every item (they get uniform items instead)."""
        return self._complement.n_saturated

    def sample(self, users, n: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        n = self.num_negatives if n is None else int(n)
        users = torch.as_tensor(users, dtype=torch.long, device=self.device)
        out = self._complement.sample(users, n, generator or self.generator)   # (B, n)
        return out[:, 0] if n == 1 else out


class CorruptTripleSampler:
    """Corrupted triples: replace the head or the tail by an entity that makes no known triple.

    ``mode="uniform"`` replaces the head with probability ½; ``"bernoulli"`` (Wang et al., 2014)
    with ``tph / (tph + hpt)`` per relation (tails per head, heads per tail), which corrupts the
    "one" side of 1-to-N relations less often. Known = the training triples (never valid/test:
    the sampler must not read evaluation data).
    """

    def __init__(self, kg_train, n_entities: Optional[int] = None, n_relations: Optional[int] = None,
                 mode: str = "uniform", num_negatives: int = 1, *, seed: Optional[int] = None, device="cpu"):
        triples = getattr(kg_train, "kg_train", kg_train)
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        self.n_entities = int(n_entities if n_entities is not None else kg_train.n_entities)
        self.n_relations = int(n_relations if n_relations is not None else kg_train.n_relations)
        KG_SAMPLERS.check(mode)
        self.mode, self.num_negatives = mode, int(num_negatives)
        self.device = torch.device(device)
        h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
        E = self.n_entities
        self._tails = ComplementSampler(h * self.n_relations + r, t, E, self.device)   # known tails of (h, r)
        self._heads = ComplementSampler(r * E + t, h, E, self.device)                  # known heads of (r, t)
        self.head_prob = torch.as_tensor(self._head_probabilities(h, r, t), device=self.device)  # (R,)
        self.generator = _generator(seed, self.device)

    def _head_probabilities(self, h: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        R = self.n_relations
        if self.mode == "uniform" or h.size == 0:
            return np.full(R, 0.5)
        n_r = np.bincount(r, minlength=R).astype(np.float64)
        heads_r = np.bincount(_unique_int(r * self.n_entities + h) // self.n_entities, minlength=R)
        tails_r = np.bincount(_unique_int(r * self.n_entities + t) // self.n_entities, minlength=R)
        tph = n_r / np.maximum(heads_r, 1)
        hpt = n_r / np.maximum(tails_r, 1)
        return np.where(n_r > 0, tph / np.maximum(tph + hpt, 1e-12), 0.5)

    def sample(self, heads, relations, tails, n: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(neg_heads, neg_tails)``, each (B,) when n == 1 else (B, n)."""
        n = self.num_negatives if n is None else int(n)
        g = generator or self.generator
        h, r, t = (torch.as_tensor(x, dtype=torch.long, device=self.device) for x in (heads, relations, tails))
        new_h = self._heads.sample(r * self.n_entities + t, n, g)              # (B, n)
        new_t = self._tails.sample(h * self.n_relations + r, n, g)             # (B, n)
        corrupt_head = torch.rand((h.shape[0], n), generator=g, device=self.device, dtype=torch.float64) \
            < self.head_prob[r][:, None]
        nh = torch.where(corrupt_head, new_h, h[:, None])
        nt = torch.where(corrupt_head, t[:, None], new_t)
        return (nh[:, 0], nt[:, 0]) if n == 1 else (nh, nt)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device="cpu") -> Iterator[torch.Tensor]:
    """Index batches of one shuffled pass over ``n`` rows (the last batch may be smaller)."""
    perm = torch.randperm(n, generator=generator, device=device)
    for start in range(0, n, batch_size):
        yield perm[start:start + batch_size]
