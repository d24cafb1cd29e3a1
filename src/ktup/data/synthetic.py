"""Synthetic KG-recommendation data with planted, relation-driven preferences.

The generating story (the one KTUP assumes): every item is a KG entity with attribute values
(tails) under several relations — each relation has its own pool of value entities, so
``(item, genre, g)`` and ``(item, director, d)`` never share tails. Each user has a preference
distribution over relations (Dirichlet) and a few favourite values per relation. An interaction
is made by drawing a relation from the user's distribution, one of the user's favourite values
under that relation, then an item that has that value. The drawn relation is the ground truth
of the interaction (``planted_relations``), kept aligned through filtering and splitting.

Everything is array code over interactions and users (no per-user loop), so the MovieLens-20M
scale preset (138k users, 27k items, 20M interactions, 1M triples) builds in seconds.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from ktup.config import DataConfig
from ktup.data.builder import RawData, build_dataset, first_occurrence
from ktup.data.dataset import KGDataset

# name -> generator arguments (the registry serves these by name)
PRESETS: dict[str, dict] = {
    "synthetic-tiny": dict(n_users=40, n_items=30, n_interactions=600, n_relations=3, values_per_relation=4, seed=7),
    "synthetic-small": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=6, values_per_relation=12, seed=7),
    "synthetic-medium": dict(n_users=5_000, n_items=3_000, n_interactions=250_000, n_relations=8, values_per_relation=40, seed=7),
    "synthetic-ml20m": dict(n_users=138_493, n_items=26_744, n_interactions=20_000_000, n_relations=12,
                            values_per_relation=800, values_per_item=3, seed=7),
}


def generate_raw(n_users: int = 100, n_items: int = 80, n_interactions: int = 3000, n_relations: int = 4,
                 values_per_relation: int = 8, values_per_item: int = 1, favourites: int = 2,
                 concentration: float = 0.3, noise: float = 0.0, min_per_user: int = 5,
                 n_entities: Optional[int] = None, seed: int = 0, name: str = "synthetic") -> RawData:
    """Raw tables of a planted dataset (see module docstring).

    ``values_per_relation`` (or ``n_entities``: total value entities, split evenly over relations)
    sets each relation's value pool; every item gets ``values_per_item`` values per relation, so
    there are ``n_items · n_relations · values_per_item`` triples. ``noise`` is the share of
    interactions with a uniformly random item (planted relation -1; approximate, as duplicate
    pairs are redrawn and planted draws repeat more often). Duplicate (user, item) pairs
    are drawn again, so the count is exact unless the user-item grid is nearly full.
    """
    rng = np.random.default_rng(seed)
    R = int(n_relations)
    if n_entities is not None:
        values_per_relation = max(1, int(n_entities) // R)
    V = int(values_per_relation)
    n_items, n_users = int(n_items), int(n_users)

    # ---- KG: item entities 0..n_items-1, value entities of relation r: n_items + r*V + (0..V-1)
    # Zipf-like value popularity so some genres are common, most rare.
    pop = 1.0 / np.arange(1, V + 1) ** 0.8
    pop /= pop.sum()
    vals = rng.choice(V, size=(n_items, R, values_per_item), p=pop)            # (I, R, m)
    # every value gets at least one item (so every favourite is reachable)
    for_cov = rng.permutation(n_items * values_per_item)[: min(V, n_items * values_per_item)]
    for r in range(R):  # loop over relations only
        flat = vals[:, r, :].reshape(-1)
        flat[for_cov] = np.arange(for_cov.size)
        vals[:, r, :] = flat.reshape(n_items, values_per_item)
    heads = np.repeat(np.arange(n_items), R * values_per_item)
    rels = np.tile(np.repeat(np.arange(R), values_per_item), n_items)
    tails = n_items + rels * V + vals.reshape(-1)
    n_ent = n_items + R * V
    key = np.sort((heads * R + rels) * n_ent + tails)                         # an item may repeat a value
    key = key[np.r_[True, key[1:] != key[:-1]]]
    triples = np.stack([key // (R * n_ent), (key // n_ent) % R, key % n_ent], axis=1)

    # value (global entity id) -> items having it: CSR over tails
    order = np.argsort(triples[:, 2], kind="stable")
    by_val_items = triples[order, 0]
    deg = np.bincount(triples[:, 2], minlength=n_ent)
    start = np.cumsum(deg) - deg

    # ---- users: relation preferences and favourite values
    pref = rng.dirichlet(np.full(R, concentration), size=n_users)             # (U, R)
    fav = rng.choice(V, size=(n_users, R, favourites), p=pop)                  # (U, R, F) value index

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        act = rng.lognormal(0.0, 1.0, n_users)
        extra = max(0, n - min_per_user * n_users)
        per_user = min_per_user + rng.multinomial(extra, act / act.sum())
        per_ur = rng.multinomial(per_user, pref)                               # (U, R) counts
        u = np.repeat(np.repeat(np.arange(n_users), R), per_ur.reshape(-1))
        r = np.repeat(np.tile(np.arange(R), n_users), per_ur.reshape(-1))
        f = rng.integers(0, favourites, size=u.size)
        v = n_items + r * V + fav[u, r, f]
        it = by_val_items[start[v] + (rng.random(u.size) * deg[v]).astype(np.int64)]
        if noise > 0:
            z = rng.random(u.size) < noise
            it[z] = rng.integers(0, n_items, size=int(z.sum()))
            r = np.where(z, -1, r)
        return u, it, r

    total = int(n_interactions)
    u, it, r = draw(total)
    key = u.astype(np.int64) * n_items + it
    first = ~pd.Series(key, copy=False).duplicated().to_numpy()   # planted draws do repeat pairs
    u, it, r, key = u[first], it[first], r[first], key[first]
    seen = None
    for _ in range(8):  # top up duplicate pairs with fresh draws, checked against `seen` only
        missing = total - u.size
        if missing <= 0:
            break
        seen = np.sort(key) if seen is None else np.sort(np.concatenate([seen, k2[new]]))  # pairs so far
        u2, i2, r2 = draw(int(missing * 1.3) + 16)
        k2 = u2.astype(np.int64) * n_items + i2
        pos = np.minimum(np.searchsorted(seen, k2), seen.size - 1)
        new = (seen[pos] != k2) & first_occurrence(k2)
        u, it, r = np.concatenate([u, u2[new]]), np.concatenate([it, i2[new]]), np.concatenate([r, r2[new]])
    perm = rng.permutation(u.size)[:total]                # a random subset when over, in random file order
    u, it, r = u[perm], it[perm], r[perm]
    ts = 1.0e9 + np.arange(u.size, dtype=np.float64) * (3.0e7 / max(1, u.size))  # file order is time order
    ratings = rng.integers(1, 6, size=u.size).astype(np.float64)

    ent_tokens = np.array([f"i{k}" for k in range(n_items)] + [f"r{k}_v{j}" for k in range(R) for j in range(V)], dtype=object)
    return RawData(
        name=name, format="synthetic", source=f"generated (seed {seed})",
        user_tokens=np.array([f"u{k}" for k in range(n_users)], dtype=object),
        item_tokens=np.array([f"i{k}" for k in range(n_items)], dtype=object),
        users=u.astype(np.int64), items=it.astype(np.int64),
        entity_tokens=ent_tokens, relation_tokens=np.array([f"rel{k}" for k in range(R)], dtype=object),
        triples=triples.astype(np.int64),
        link_items=np.arange(n_items, dtype=np.int64), link_entities=np.arange(n_items, dtype=np.int64),
        ratings=ratings, timestamps=ts,
        extra={"planted_relation": r.astype(np.int64)},
        notes=[f"synthetic: {u.size} interactions, {triples.shape[0]} triples, {R} relations, seed {seed}"],
    )


def generate(n_users: int = 100, n_items: int = 80, n_interactions: int = 3000, n_relations: int = 4,
             values_per_relation: int = 8, seed: int = 0, cfg: Optional[DataConfig] = None,
             name: str = "synthetic", **kwargs) -> KGDataset:
    """A split :class:`KGDataset` with planted truth in ``planted_relations[split]``.

    ``cfg`` gives filters and split (default: no filters, random 8:1:1, split seed ``seed``).
    Further keyword arguments go to :func:`generate_raw`.
    """
    raw = generate_raw(n_users=n_users, n_items=n_items, n_interactions=n_interactions, n_relations=n_relations,
                       values_per_relation=values_per_relation, seed=seed, name=name, **kwargs)
    if cfg is None:
        cfg = DataConfig(dataset=name, drop_unlinked=False, split_seed=seed)
    return build_dataset(raw, cfg, name=name)


def preset_raw(name: str) -> RawData:
    return generate_raw(name=name, **PRESETS[name])
