"""KG evidence for an explanation: which entities an item reaches through a relation, and
which items of a user's history reach the same entities through the same relation.

Built once per dataset from the full KG (train + valid + test triples: explanations may use
every known fact). The index is a table of *item facts* ``(item, relation, neighbour)``: item
``i`` is linked to entity ``e`` and ``e`` is the head or tail of a triple with ``relation``
whose other end is ``neighbour``. Sorted twice, it answers both look-ups with binary search:
(item, relation) → neighbours, and (relation, neighbour) → items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ktup.data.dataset import UNLINKED


def expand_csr(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row r in ``rows`` the positions ``indptr[r]:indptr[r+1]``; returns (owner, pos)."""
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.shape[0]), lens)
    offsets = np.repeat(starts - np.cumsum(lens) + lens, lens)
    pos = offsets + np.arange(owner.shape[0])
    return owner, pos


@dataclass
class SharedEntity:
    """One entity the item reaches through the relation, with the history items reaching it too."""

    entity: int
    history_items: np.ndarray   # internal ids of history items that reach the entity via the relation
    n_items: int                # all items (any user) reaching it via the relation: how specific it is


class EvidenceIndex:
    """Item facts of a KG, indexed for explanation look-ups (vectorised build, O(log n) queries)."""

    def __init__(self, kg: np.ndarray, item_entity: np.ndarray, n_entities: int):
        kg = np.asarray(kg, dtype=np.int64).reshape(-1, 3)
        item_entity = np.asarray(item_entity, dtype=np.int64)
        self.n_items = int(item_entity.shape[0])
        self.n_entities = int(n_entities)
        self.item_entity = item_entity
        # entity → items linked to it (usually one; several items may share an entity).
        linked = np.flatnonzero(item_entity != UNLINKED)
        order = linked[np.argsort(item_entity[linked], kind="stable")]
        counts = np.bincount(item_entity[order], minlength=self.n_entities)
        self.entity_indptr = np.zeros(self.n_entities + 1, dtype=np.int64)
        np.cumsum(counts, out=self.entity_indptr[1:])
        self.entity_items = order.astype(np.int64)
        # Facts from both ends of every triple: (linked entity, relation, other end).
        ends = np.concatenate([kg[:, [0, 1, 2]], kg[:, [2, 1, 0]]], axis=0)  # (2n, 3)
        owner, pos = expand_csr(self.entity_indptr, ends[:, 0])
        facts = np.stack([self.entity_items[pos], ends[owner, 1], ends[owner, 2]], axis=1)  # (m, 3) item, rel, nb
        facts = np.unique(facts, axis=0) if facts.shape[0] else facts.reshape(0, 3)
        self.n_relations = int(kg[:, 1].max()) + 1 if kg.shape[0] else 0
        # Sorted by (item, relation, neighbour) already (np.unique); keys for binary search.
        self._by_item = facts
        self._item_key = facts[:, 0] * (self.n_relations + 1) + facts[:, 1]
        by_rel = facts[np.lexsort((facts[:, 0], facts[:, 2], facts[:, 1]))]
        self._by_rel = by_rel
        self._rel_key = by_rel[:, 1] * self.n_entities + by_rel[:, 2]

    def __len__(self) -> int:
        return int(self._by_item.shape[0])

    def items_of_entity(self, entity: int) -> np.ndarray:
        """Items linked to ``entity`` (internal ids)."""
        return self.entity_items[self.entity_indptr[entity]:self.entity_indptr[entity + 1]]

    def neighbours(self, item: int, relation: int) -> np.ndarray:
        """Entities item ``item`` reaches through ``relation`` (sorted, unique)."""
        if relation < 0 or relation >= self.n_relations:
            return np.zeros(0, dtype=np.int64)
        key = int(item) * (self.n_relations + 1) + int(relation)
        lo, hi = np.searchsorted(self._item_key, [key, key + 1])
        return self._by_item[lo:hi, 2]

    def items_reaching(self, relation: int, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (entity, item) pairs with item reaching entity through ``relation``: (owner idx, item)."""
        entities = np.asarray(entities, dtype=np.int64)
        keys = int(relation) * self.n_entities + entities
        lo = np.searchsorted(self._rel_key, keys, side="left")
        hi = np.searchsorted(self._rel_key, keys, side="right")
        indptr = np.concatenate([[0], np.cumsum(hi - lo)])
        owner, pos = expand_csr(indptr, np.arange(entities.shape[0]))
        return owner, self._by_rel[lo[owner] + (pos - indptr[owner]), 0]

    def shared(self, item: int, relation: int, history: np.ndarray) -> list[SharedEntity]:
        """Entities ``item`` reaches through ``relation``, each with the history items reaching it.

        Entities shared with the history come first, the most specific (fewest items reaching
        it overall) leading: a director shared by 3 films says more than a genre shared by 900.
        """
        nbs = self.neighbours(item, relation)
        if nbs.shape[0] == 0:
            return []
        owner, items = self.items_reaching(relation, nbs)
        n_all = np.bincount(owner, minlength=nbs.shape[0])
        history = np.asarray(history, dtype=np.int64)
        in_hist = np.isin(items, history) & (items != int(item))
        out = [
            SharedEntity(int(e), np.unique(items[in_hist & (owner == j)]), int(n_all[j]))
            for j, e in enumerate(nbs.tolist())
        ]
        out.sort(key=lambda s: (s.history_items.shape[0] == 0, s.n_items, -s.history_items.shape[0], s.entity))
        return out

    def relations_of(self, item: int) -> np.ndarray:
        """Relation ids for which ``item`` has at least one KG fact (sorted, unique)."""
        key0 = int(item) * (self.n_relations + 1)
        lo, hi = np.searchsorted(self._item_key, [key0, key0 + self.n_relations + 1])
        return np.unique(self._by_item[lo:hi, 1])

    def support(self, item: int, history: np.ndarray) -> np.ndarray:
        """(R,) how strongly each relation links ``item`` to ``history`` (one pair; the same
        figure as :class:`RelationSupport`): Σ over the item's neighbours nb through r of
        (history items ≠ item reaching nb through r) / (all items reaching it), plus 1 per
        history item that *is* such a neighbour. 0: no KG path through r."""
        out = np.zeros(self.n_relations)
        key0 = int(item) * (self.n_relations + 1)
        lo, hi = np.searchsorted(self._item_key, [key0, key0 + self.n_relations + 1])
        facts = self._by_item[lo:hi]
        if facts.shape[0] == 0:
            return out
        history = np.asarray(history, dtype=np.int64)
        history = history[history != int(item)]
        rk = facts[:, 1] * self.n_entities + facts[:, 2]
        a = np.searchsorted(self._rel_key, rk, side="left")
        b = np.searchsorted(self._rel_key, rk, side="right")
        owner, pos = expand_csr(np.concatenate([[0], np.cumsum(b - a)]), np.arange(rk.shape[0]))
        reach = self._by_rel[a[owner] + (pos - np.repeat(np.cumsum(b - a) - (b - a), b - a)), 0]
        hits = np.bincount(owner[np.isin(reach, history)], minlength=rk.shape[0])
        w = hits / np.maximum(b - a, 1)
        ents = self.item_entity[history]
        ents = np.sort(ents[ents != UNLINKED])                    # history items that *are* a neighbour
        w = w + (np.searchsorted(ents, facts[:, 2], side="right") - np.searchsorted(ents, facts[:, 2], side="left"))
        np.add.at(out, facts[:, 1], w)
        return out

    def linked_history(self, entities: np.ndarray, history: np.ndarray, exclude: int) -> np.ndarray:
        """History items that *are* one of ``entities`` (e.g. the film's sequel, which you watched)."""
        history = np.asarray(history, dtype=np.int64)
        history = history[history != int(exclude)]
        ents = self.item_entity[history]
        return history[np.isin(ents, np.asarray(entities, dtype=np.int64)) & (ents != UNLINKED)]

    def paths_exist(self, users: np.ndarray, items: np.ndarray, relations: np.ndarray,
                    hist_indptr: np.ndarray, hist_items: np.ndarray) -> np.ndarray:
        """(B,) bool: does (user, item) have a KG path through ``relation`` to the user's history?

        The batch form of :meth:`shared` + :meth:`linked_history` (same answer as an explanation's
        ``paths_found``), vectorised over pairs. ``hist_indptr/hist_items`` is the users' history
        as CSR. Used to measure evidence coverage over many recommendations.
        """
        pair, _ = self.path_items(users, items, relations, hist_indptr, hist_items)
        found = np.zeros(np.asarray(users).shape[0], dtype=bool)
        found[pair] = True
        return found

    def path_items(self, users: np.ndarray, items: np.ndarray, relations: np.ndarray,
                   hist_indptr: np.ndarray, hist_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The history items each pair's evidence rests on: unique ``(pair index, history item)``
        with the history item j ≠ item reaching a neighbour of the item through the pair's
        relation, or *being* such a neighbour (vectorised joins by binary search)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        relations = np.asarray(relations, dtype=np.int64)
        R1, E, I = self.n_relations + 1, self.n_entities, self.n_items
        # Facts of each queried pair's item restricted to its relation: (pair, neighbour).
        keys = items * R1 + relations
        lo = np.searchsorted(self._item_key, keys, side="left")
        hi = np.searchsorted(self._item_key, keys, side="right")
        indptr = np.concatenate([[0], np.cumsum(hi - lo)])
        pair, pos = expand_csr(indptr, np.arange(users.shape[0]))
        nb = self._by_item[lo[pair] + (pos - indptr[pair]), 2]              # (F,)
        rel = relations[pair]
        # Items reaching (rel, nb): join through the relation-sorted table.
        rk = rel * E + nb
        lo2 = np.searchsorted(self._rel_key, rk, side="left")
        hi2 = np.searchsorted(self._rel_key, rk, side="right")
        indptr2 = np.concatenate([[0], np.cumsum(hi2 - lo2)])
        fact, pos2 = expand_csr(indptr2, np.arange(rk.shape[0]))
        other = self._by_rel[lo2[fact] + (pos2 - indptr2[fact]), 0]        # items sharing the neighbour
        cand_pair = pair[fact]
        # Direct links: the neighbour itself is an item's entity.
        d_fact, d_pos = expand_csr(self.entity_indptr, nb)
        cand_pair = np.concatenate([cand_pair, pair[d_fact]])
        other = np.concatenate([other, self.entity_items[d_pos]])
        keep = other != items[cand_pair]
        cand_pair, other = cand_pair[keep], other[keep]
        # Membership of (user, other) in the history: binary search in the sorted CSR rows.
        hist_key = np.repeat(np.arange(hist_indptr.shape[0] - 1), np.diff(hist_indptr)) * I + hist_items
        q = users[cand_pair] * I + other
        at = np.searchsorted(hist_key, q)
        hit = (at < hist_key.shape[0]) & (hist_key[np.minimum(at, hist_key.shape[0] - 1)] == q)
        key = np.unique(cand_pair[hit] * I + other[hit])
        return key // I, key % I



class RelationSupport:
    """How strongly each relation connects an item to a user's history in the KG (vectorised).

    ``support[b, r] = Σ_nb  n_hist(u_b, r, nb) / deg(r, nb)`` over the neighbours nb that item
    i_b reaches through r, where n_hist counts the user's history items (other than i_b)
    reaching nb through r and deg counts all items reaching it; a history item that *is* nb
    (a sequel you watched) adds 1. Zero means no KG path through r. Built once for a history
    (CSR ``hist_indptr, hist_items``); queries are batched joins by binary search.
    """

    def __init__(self, index: EvidenceIndex, hist_indptr: np.ndarray, hist_items: np.ndarray):
        self.idx = index
        f = index._by_item
        R, E, I = index.n_relations, index.n_entities, index.n_items
        self.R, self.E = R, E
        self.f_ptr = np.zeros(I + 1, dtype=np.int64)
        np.cumsum(np.bincount(f[:, 0], minlength=I), out=self.f_ptr[1:])
        self.rn = f[:, 1] * E + f[:, 2]
        self.deg_keys, self.deg = np.unique(self.rn, return_counts=True)
        hist_users = np.repeat(np.arange(hist_indptr.shape[0] - 1), np.diff(hist_indptr))
        own, pos = expand_csr(self.f_ptr, np.asarray(hist_items, dtype=np.int64))
        self.keys, self.counts = np.unique(hist_users[own] * (R * E) + self.rn[pos], return_counts=True)
        ents = index.item_entity[hist_items]
        ok = ents != UNLINKED
        self.ent_keys, self.ent_counts = np.unique(hist_users[ok] * E + ents[ok], return_counts=True)
        self.hist_indptr, self.hist_items = hist_indptr, hist_items

    @staticmethod
    def _lookup(keys: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
        if keys.shape[0] == 0:
            return np.zeros(q.shape[0], dtype=np.int64)
        at = np.minimum(np.searchsorted(keys, q), keys.shape[0] - 1)
        return np.where(keys[at] == q, counts[at], 0)

    def _in_history(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        I = self.idx.n_items
        hk = np.repeat(np.arange(self.hist_indptr.shape[0] - 1), np.diff(self.hist_indptr)) * I + self.hist_items
        q = users * I + items
        at = np.minimum(np.searchsorted(hk, q), max(hk.shape[0] - 1, 0))
        return (hk.shape[0] > 0) & (hk[at] == q) if hk.shape[0] else np.zeros(q.shape[0], dtype=bool)

    def support(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, R) float64 support of each relation for each (user, item) pair."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros((users.shape[0], self.R))
        own, pos = expand_csr(self.f_ptr, items)
        if own.shape[0] == 0:
            return out
        rn = self.rn[pos]
        c = self._lookup(self.keys, self.counts, users[own] * (self.R * self.E) + rn)
        c = c - self._in_history(users, items)[own]            # the item itself is not its own evidence
        w = np.maximum(c, 0) / self.deg[np.searchsorted(self.deg_keys, rn)]
        nb = self.idx._by_item[pos, 2]
        direct = self._lookup(self.ent_keys, self.ent_counts, users[own] * self.E + nb)
        own_ent = self.idx.item_entity[items][own]
        direct = direct - ((nb == own_ent) & self._in_history(users, items)[own])
        w = w + np.maximum(direct, 0)
        np.add.at(out, (own, self.idx._by_item[pos, 1]), w)
        return out
