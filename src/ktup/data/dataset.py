"""The dataset object every other part of ktup reads.

Internal ids are contiguous ``0..n-1`` for users, items, entities and relations; the original
tokens are kept in :class:`IdMap` for output. Interactions are compact index arrays with a CSR
view per user; KG triples are an ``(n, 3)`` int64 array with columns (head, relation, tail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ktup.errors import KtupError

UNLINKED = -1  # item_entity value of an item without a KG entity


class IdMap:
    """Original token ↔ contiguous internal id."""

    def __init__(self, tokens: Iterable[str], kind: str = "id"):
        self.tokens: list[str] = [str(t) for t in tokens]
        self.kind = kind
        self._index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError(f"duplicate {kind} tokens in IdMap")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return str(token) in self._index

    def index(self, token: object) -> int:
        """Internal id of an original token; a clear error naming it when unknown."""
        try:
            return self._index[str(token)]
        except KeyError:
            raise KtupError(f"unknown {self.kind} {token!r}") from None

    def lookup(self, tokens: Sequence[object]) -> np.ndarray:
        """Internal ids of many tokens (int64); raises naming the first unknown one."""
        return np.fromiter((self.index(t) for t in tokens), dtype=np.int64, count=len(tokens))

    def token(self, idx: int) -> str:
        return self.tokens[int(idx)]

    def __repr__(self) -> str:
        return f"IdMap({self.kind}, n={len(self)})"


@dataclass
class Interactions:
    """One split of user–item interactions as parallel int64 arrays."""

    users: np.ndarray                       # (n,) int64 internal user ids
    items: np.ndarray                       # (n,) int64 internal item ids
    n_users: int
    n_items: int
    ratings: Optional[np.ndarray] = None    # (n,) float32, when the source had them
    timestamps: Optional[np.ndarray] = None  # (n,) float64, when the source had them

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr (n_users+1,), indices)``: items of user u are ``indices[indptr[u]:indptr[u+1]]``, sorted."""
        order = np.lexsort((self.items, self.users))
        counts = np.bincount(self.users, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, self.items[order].astype(np.int64, copy=False)

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)

    @staticmethod
    def concat(parts: Sequence["Interactions"]) -> "Interactions":
        parts = list(parts)
        n_users, n_items = parts[0].n_users, parts[0].n_items
        return Interactions(
            users=np.concatenate([p.users for p in parts]).astype(np.int64),
            items=np.concatenate([p.items for p in parts]).astype(np.int64),
            n_users=n_users,
            n_items=n_items,
        )


@dataclass
class KGDataset:
    """A recommendation dataset with a knowledge graph, already split.

    ``item_entity[i]`` is the entity linked to item ``i`` or ``UNLINKED`` (-1).
    ``kg_train/kg_valid/kg_test`` are ``(n, 3)`` int64 arrays (head, relation, tail) of internal ids;
    ``kg_train`` is what KG training uses, valid/test are for link-prediction evaluation.
    ``item_info`` holds optional side columns keyed by name (e.g. ``"title"``), each a list of
    length ``n_items`` (None where unknown). ``meta`` records the source format, what each filter
    removed, and how the split was made (method, ratios, seed, hash).
    """

    name: str
    users: IdMap
    items: IdMap
    entities: IdMap
    relations: IdMap
    item_entity: np.ndarray
    train: Interactions
    valid: Interactions
    test: Interactions
    kg_train: np.ndarray
    kg_valid: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    kg_test: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    item_info: dict[str, list] = field(default_factory=dict)
    entity_names: Optional[list] = None     # readable entity names when the source has them
    meta: dict[str, Any] = field(default_factory=dict)
    # Ground truth of the synthetic generator: for each split name, the relation (internal id)
    # through which each interaction was generated, aligned with that split's arrays.
    planted_relations: Optional[dict[str, np.ndarray]] = None

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        return len(self.relations)

    @property
    def kg_all(self) -> np.ndarray:
        return np.concatenate([self.kg_train, self.kg_valid, self.kg_test], axis=0)

    @property
    def n_interactions(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)

    @property
    def n_linked_items(self) -> int:
        return int((self.item_entity != UNLINKED).sum())

    # ------------------------------------------------------------------ views
    def split(self, name: str) -> Interactions:
        if name not in ("train", "valid", "test"):
            raise KtupError(f"unknown split {name!r} (train, valid, test)")
        return getattr(self, name)

    def seen_before(self, split: str) -> Interactions:
        """Interactions to mask when evaluating ``split``: train for valid, train+valid for test."""
        if split == "valid":
            return self.train
        if split == "test":
            return Interactions.concat([self.train, self.valid])
        raise KtupError(f"unknown evaluation split {split!r} (valid, test)")

    def item_title(self, item: int) -> Optional[str]:
        titles = self.item_info.get("title")
        return None if titles is None else titles[int(item)]

    def entity_name(self, entity: int) -> str:
        if self.entity_names is not None and self.entity_names[int(entity)]:
            return str(self.entity_names[int(entity)])
        return self.entities.token(entity)

    def info(self) -> dict[str, Any]:
        """Summary figures (the keys `ktup datasets info --json` prints)."""
        n_inter = self.n_interactions
        pairs = self.distinct_pairs()
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n_inter,
            "entities": self.n_entities,
            "relations": self.n_relations,
            "triples": int(self.kg_train.shape[0] + self.kg_valid.shape[0] + self.kg_test.shape[0]),
            "linked_items": self.n_linked_items,
            "distinct_pairs": pairs,
            # share of the user × item matrix left empty: counted on distinct pairs, since a file
            # that repeats a pair (dedup off) must not push it below 0
            "sparsity": 1.0 - pairs / max(1, self.n_users * self.n_items),
        }

    def distinct_pairs(self) -> int:
        """Distinct (user, item) pairs over all splits (one int64 key sort)."""
        parts = [self.train, self.valid, self.test]
        key = np.concatenate([np.asarray(p.users, np.int64) * max(1, self.n_items) + np.asarray(p.items, np.int64)
                              for p in parts]) if parts else np.zeros(0, np.int64)
        if key.size == 0:
            return 0
        key.sort()
        return int(1 + np.count_nonzero(key[1:] != key[:-1]))
