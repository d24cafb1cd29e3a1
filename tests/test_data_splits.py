"""Filters (with their reports) and splits: seeded, reproducible, disjoint, covering, RecBole's rounding."""

from __future__ import annotations

import numpy as np
import pytest

from ktup.config import DataConfig
from ktup.data import splits as S
from ktup.data.builder import RawData, build_dataset, kcore_mask
from ktup.errors import KtupError


def _recbole_counts(tot: int, ratios) -> list[int]:
    """Plain port of RecBole's ``_calcu_split_ids`` rounding (the reference)."""
    tot_ratio = sum(ratios)
    ratios = [r / tot_ratio for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.1, 0.2), (8, 1, 0), (0.6, 0.2, 0.2), (1, 0, 0)])
def test_ratio_counts_match_recbole(ratios):
    n = np.arange(0, 60)
    tr, va, te = S.ratio_counts(n, ratios)
    for k in range(60):
        assert [tr[k], va[k], te[k]] == _recbole_counts(k, ratios)


def _random_users(n=2000, n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_users, n)


@pytest.mark.parametrize("method", ["random", "ratio_per_user", "loo", "temporal"])
def test_interaction_splits_partition_and_reproduce(method):
    users = _random_users()
    ts = np.random.default_rng(5).random(users.size)
    a = S.split_interactions(users, 120, method, (0.8, 0.1, 0.1), 7, ts)
    b = S.split_interactions(users, 120, method, (0.8, 0.1, 0.1), 7, ts)
    allidx = np.concatenate(a)
    assert np.array_equal(np.sort(allidx), np.arange(users.size))      # disjoint and covering
    for x, y in zip(a, b):
        assert np.array_equal(x, y)                                     # same seed, same split
    if method in ("random", "ratio_per_user"):
        c = S.split_interactions(users, 120, method, (0.8, 0.1, 0.1), 8, ts)
        assert not np.array_equal(a[2], c[2])                           # another seed, another split
        counts = np.bincount(users, minlength=120)
        want = S.ratio_counts(counts, (0.8, 0.1, 0.1))
        for part, w in zip(a, want):
            assert np.array_equal(np.bincount(users[part], minlength=120), w)


def test_temporal_and_loo_respect_time():
    users = _random_users(800, 40, 1)
    ts = np.random.default_rng(2).permutation(users.size).astype(float)
    tr, va, te = S.temporal_split(users, ts, (0.8, 0.1, 0.1))
    for u in range(40):
        t_tr, t_te = ts[tr][users[tr] == u], ts[te][users[te] == u]
        if t_tr.size and t_te.size:
            assert t_tr.max() < t_te.min()
    tr, va, te = S.loo_split(users, 0, ts)
    for u in range(40):
        mine = np.sort(ts[users == u])
        assert ts[te][users[te] == u].tolist() == mine[-1:].tolist()
        assert ts[va][users[va] == u].tolist() == mine[-2:-1].tolist()


def test_loo_small_users_keep_a_train_row():
    users = np.array([0, 1, 1, 2, 2, 2])
    tr, va, te = S.loo_split(users, 0)
    assert sorted(users[tr].tolist()) == [0, 1, 2]
    assert users[va].tolist() == [2] and sorted(users[te].tolist()) == [1, 2]


def test_temporal_needs_timestamps():
    with pytest.raises(KtupError, match="temporal needs timestamps"):
        S.split_interactions(np.array([0, 0]), 1, "temporal", (0.8, 0.1, 0.1), 0, None)


def test_kg_split_covers_entities_and_relations_in_train():
    rng = np.random.default_rng(0)
    m, ne, nr = 3000, 800, 15
    tri = np.stack([rng.integers(0, ne, m), rng.integers(0, nr, m), rng.integers(0, ne, m)], axis=1)
    a = S.split_kg(tri, ne, nr, (0.9, 0.05, 0.05), 11)
    b = S.split_kg(tri, ne, nr, (0.9, 0.05, 0.05), 11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(m))
    tr = tri[a[0]]
    ents, rels = set(tr[:, 0]) | set(tr[:, 2]), set(tr[:, 1])
    for part in a[1:]:
        assert len(part) > 50                                           # held-out parts are not emptied
        for h, r, t in tri[part]:
            assert h in ents and t in ents and r in rels


# ----------------------------------------------------------------------------- filters
def _raw(users, items, ratings=None, n_items=None) -> RawData:
    users, items = np.asarray(users), np.asarray(items)
    nu, ni = int(users.max()) + 1, n_items or int(items.max()) + 1
    return RawData(
        name="t", format="test", source="memory",
        user_tokens=np.array([f"u{k}" for k in range(nu)], dtype=object),
        item_tokens=np.array([f"i{k}" for k in range(ni)], dtype=object),
        users=users, items=items,
        entity_tokens=np.array([f"e{k}" for k in range(ni)], dtype=object),
        relation_tokens=np.array(["r"], dtype=object),
        triples=np.zeros((0, 3), np.int64),
        link_items=np.arange(ni // 2), link_entities=np.arange(ni // 2),
        ratings=None if ratings is None else np.asarray(ratings, float),
    )


def _brute_kcore(pairs: list[tuple[int, int]], k: int) -> set:
    cur = set(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in cur:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        nxt = {(u, i) for u, i in cur if uc[u] >= k and ic[i] >= k}
        if nxt == cur:
            return cur
        cur = nxt


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_kcore_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 25, 300), rng.zipf(1.6, 300) % 30)})
    u = np.array([p[0] for p in pairs])
    i = np.array([p[1] for p in pairs])
    keep = kcore_mask(u, i, 25, 30, k)
    assert {p for p, kp in zip(pairs, keep) if kp} == _brute_kcore(pairs, k)


def test_filters_report_counts():
    users = [0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 3]
    items = [0, 1, 2, 3, 0, 2, 5, 0, 4, 0, 1, 1, 0]        # row 9 duplicates (0, 0)
    ratings = [5, 4, 2, 5, 5, 1, 5, 4, 5, 3, 5, 5, 5]
    raw = _raw(users, items, ratings, n_items=6)           # items 0, 1, 2 linked
    ds = build_dataset(raw, DataConfig(dataset="t", rating_threshold=3, drop_unlinked=True, k_core=2, dedup=True))
    f = ds.meta["filters"]
    assert f["dedup"]["interactions_removed"] == 1
    assert f["rating_threshold"] == {"threshold": 3, "interactions_removed": 2}
    assert f["drop_unlinked"] == {"interactions_removed": 3, "items_removed": 3}
    assert f["k_core"] == {"k": 2, "interactions_removed": 1, "users_removed": 1, "items_removed": 0}
    assert ds.n_interactions == 6 and ds.n_users == 3 and ds.n_items == 2
    assert ds.users.tokens == ["u0", "u1", "u2"] and ds.items.tokens == ["i0", "i1"]
    assert any(line.startswith("filter rating_threshold") for line in ds.meta["report"])


def test_kcore_filter_end_to_end_equals_brute_force():
    rng = np.random.default_rng(3)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 400), rng.integers(0, 40, 400))})
    raw = _raw([p[0] for p in pairs], [p[1] for p in pairs], n_items=40)
    ds = build_dataset(raw, DataConfig(dataset="t", k_core=4, drop_unlinked=False))
    got = {(int(ds.users.token(u)[1:]), int(ds.items.token(i)[1:]))
           for s in (ds.train, ds.valid, ds.test) for u, i in zip(s.users, s.items)}
    want = _brute_kcore(pairs, 4)
    assert got == want
    assert ds.meta["filters"]["k_core"]["interactions_removed"] == len(pairs) - len(want)
    assert ds.n_users == len({u for u, _ in want}) and ds.n_items == len({i for _, i in want})


def test_everything_filtered_is_a_clear_error():
    raw = _raw([0, 1], [0, 1], n_items=2)
    with pytest.raises(KtupError, match="no interactions left after filtering"):
        build_dataset(raw, DataConfig(dataset="t", k_core=5))


def test_split_hash_identifies_split(tiny_dataset):
    from ktup.data.synthetic import PRESETS, generate

    h = tiny_dataset.meta["split"]["hash"]
    assert h == S.split_hash(tiny_dataset) and len(h) == 64
    other = generate(**{**PRESETS["synthetic-tiny"]}, cfg=DataConfig(dataset="x", drop_unlinked=False, split_seed=99))
    assert other.meta["split"]["hash"] != h


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(users=st.lists(st.integers(0, 12), min_size=1, max_size=200),
       ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.1, 0.2), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)]),
       seed=st.integers(0, 2**31 - 1))
def test_random_split_property(users, ratios, seed):
    """Any input: a partition of the rows; each user's part sizes are RecBole's; train keeps one row."""
    u = np.asarray(users, dtype=np.int64)
    parts = S.random_split(u, ratios, seed)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(u.size))
    counts = np.bincount(u, minlength=13)
    want = S.ratio_counts(counts, ratios)
    for part, w in zip(parts, want):
        assert np.array_equal(np.bincount(u[part], minlength=13), w)
    assert (np.bincount(u[parts[0]], minlength=13)[counts > 0] >= 1).all()
