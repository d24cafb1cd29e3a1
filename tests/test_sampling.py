"""Samplers: negatives are never known positives, uniform over the complement, seeded, fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ktup.data.dataset import Interactions
from ktup.training.sampling import CorruptTripleSampler, NegativeItemSampler, epoch_batches


def dense_train(n_users=30, n_items=12, density=0.7, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[0] = True                       # user 0 has seen every item (saturated)
    mask[1] = False                      # user 1 has seen nothing
    mask[2] = True
    mask[2, 5] = False                   # user 2 has exactly one negative
    u, i = np.nonzero(mask)
    # duplicates and unsorted order must not matter
    u, i = np.concatenate([u, u[:10]]), np.concatenate([i, i[:10]])
    perm = rng.permutation(u.size)
    return Interactions(users=u[perm].astype(np.int64), items=i[perm].astype(np.int64), n_users=n_users, n_items=n_items)


def test_negatives_never_in_train_set():
    train = dense_train()
    s = NegativeItemSampler(train, train.n_items, seed=1)
    seen = np.zeros((train.n_users, train.n_items), bool)
    seen[train.users, train.items] = True
    users = torch.arange(train.n_users).repeat(200)
    neg = s.sample(users, 4)
    assert neg.shape == (users.shape[0], 4) and neg.dtype == torch.long
    assert neg.min() >= 0 and neg.max() < train.n_items
    bad = seen[users[:, None].numpy(), neg.numpy()]
    assert not bad[users.numpy() != 0].any()             # every non-saturated user: never a positive
    assert s.n_saturated == 1
    assert torch.all(s.sample(torch.full((50,), 2), 1) == 5)


def test_negatives_uniform_over_complement():
    train = dense_train(density=0.5)
    s = NegativeItemSampler(train, seed=3) if hasattr(train, "train") else NegativeItemSampler(train, train.n_items, seed=3)
    users = torch.full((60000,), 4)
    neg = s.sample(users, 1)
    assert neg.shape == (60000,)
    free = sorted(set(range(train.n_items)) - set(train.items[train.users == 4].tolist()))
    counts = np.bincount(neg.numpy(), minlength=train.n_items)
    assert set(np.nonzero(counts)[0].tolist()) == set(free)
    expected = 60000 / len(free)
    assert np.all(np.abs(counts[free] - expected) < 5 * np.sqrt(expected))   # chi-by-eye: within 5 sigma
    # a user with no history draws from all items
    all_counts = np.bincount(s.sample(torch.full((24000,), 1), 1).numpy(), minlength=train.n_items)
    assert np.all(np.abs(all_counts - 2000) < 5 * np.sqrt(2000))


def test_sampler_accepts_dataset_and_is_reproducible():
    class FakeDataset:
        train = dense_train()
        n_items = 12
    a = NegativeItemSampler(FakeDataset(), seed=7).sample(torch.arange(30), 3)
    b = NegativeItemSampler(FakeDataset.train, 12, seed=7).sample(torch.arange(30), 3)
    assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s = NegativeItemSampler(FakeDataset.train, 12)
    assert torch.equal(s.sample(torch.arange(30), 2, generator=g1), s.sample(torch.arange(30), 2, generator=g2))
    assert not torch.equal(s.sample(torch.arange(30), 2, generator=g1), s.sample(torch.arange(30), 2, generator=g2.manual_seed(6)))


def kg(n_entities=20):
    rng = np.random.default_rng(0)
    trip = [(h, 0, (h * 7 + k) % n_entities) for h in range(n_entities) for k in range(6)]   # rel 0: 1-to-6
    trip += [(h, 1, 0) for h in range(1, n_entities)]                                        # rel 1: N-to-1
    trip += [(int(a), 2, int(b)) for a, b in rng.integers(0, n_entities, (30, 2))]
    return np.array(trip, dtype=np.int64)


@pytest.mark.parametrize("mode", ["uniform", "bernoulli"])
def test_corrupted_triples_are_unknown(mode):
    trip = kg()
    s = CorruptTripleSampler(trip, 20, 3, mode=mode, seed=0)
    idx = torch.arange(trip.shape[0]).repeat(50)
    h, r, t = (torch.as_tensor(trip[:, c])[idx] for c in range(3))
    nh, nt = s.sample(h, r, t, 2)
    assert nh.shape == nt.shape == (idx.shape[0], 2)
    known = set(map(tuple, trip.tolist()))
    rr = r[:, None].expand_as(nh)
    assert not any((a, b, c) in known for a, b, c in zip(nh.flatten().tolist(), rr.flatten().tolist(), nt.flatten().tolist()))
    # exactly one side changed
    head_changed, tail_changed = nh != h[:, None], nt != t[:, None]
    assert torch.all(head_changed ^ tail_changed)
    nh1, nt1 = s.sample(h[:5], r[:5], t[:5], 1)
    assert nh1.shape == (5,) and nt1.shape == (5,)


def test_bernoulli_probabilities():
    trip = kg()
    s = CorruptTripleSampler(trip, 20, 3, mode="bernoulli", seed=0)
    # rel 0: each head has 6 tails; tails: each tail appears for 6 heads -> tph = hpt -> 0.5
    # rel 1: 19 heads to 1 tail -> tph = 1, hpt = 19 -> replace head with prob 1/20
    assert s.head_prob[1].item() == pytest.approx(1 / 20)
    assert s.head_prob[0].item() == pytest.approx(0.5)
    h, r, t = torch.full((20000,), 3), torch.full((20000,), 1), torch.zeros(20000, dtype=torch.long)
    nh, nt = s.sample(h, r, t, 1)
    assert (nh != 3).float().mean().item() == pytest.approx(1 / 20, abs=0.01)
    u = CorruptTripleSampler(trip, 20, 3, mode="uniform", seed=0)
    assert torch.all(u.head_prob == 0.5)


def test_triple_sampler_reproducible_and_fast():
    rng = np.random.default_rng(1)
    E, R, n = 20000, 20, 50000
    trip = np.stack([rng.integers(0, E, n), rng.integers(0, R, n), rng.integers(0, E, n)], 1)
    a = CorruptTripleSampler(trip, E, R, mode="bernoulli", seed=4)
    b = CorruptTripleSampler(trip, E, R, mode="bernoulli", seed=4)
    h, r, t = (torch.as_tensor(trip[:4096, c]) for c in range(3))
    start = time.perf_counter()
    out_a = a.sample(h, r, t, 4)
    elapsed = time.perf_counter() - start
    assert all(torch.equal(x, y) for x, y in zip(out_a, b.sample(h, r, t, 4)))
    assert elapsed < 2.0          # vectorised: milliseconds when idle (a per-sample loop takes far longer)

    users = rng.integers(0, 5000, 300000)
    items = rng.integers(0, 20000, 300000)
    s = NegativeItemSampler(Interactions(users=users, items=items, n_users=5000, n_items=20000), seed=0)
    start = time.perf_counter()
    s.sample(torch.as_tensor(users[:100000]), 1)
    assert time.perf_counter() - start < 2.0


def test_epoch_batches_cover_all_rows_once():
    g = torch.Generator().manual_seed(0)
    batches = list(epoch_batches(10, 4, g))
    assert [b.numel() for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_samplers_on_cuda():
    train = dense_train()
    s = NegativeItemSampler(train, train.n_items, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    neg = s.sample(torch.arange(train.n_users, device="cuda"), 3, generator=g)
    assert neg.device.type == "cuda"
    seen = np.zeros((train.n_users, train.n_items), bool)
    seen[train.users, train.items] = True
    assert not seen[np.arange(train.n_users)[1:, None], neg.cpu().numpy()[1:]].any()
    trip = kg()
    k = CorruptTripleSampler(trip, 20, 3, mode="bernoulli", device="cuda")
    nh, nt = k.sample(*(torch.as_tensor(trip[:, c], device="cuda") for c in range(3)), 2, generator=g)
    assert nh.device.type == "cuda" and nh.shape == (trip.shape[0], 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 8)), max_size=40),
       st.integers(0, 2**31 - 1))
def test_negatives_never_positive_property(n_users, n_items, pairs, seed):
    pairs = [(u, i) for u, i in pairs if u < n_users and i < n_items]
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    s = NegativeItemSampler(Interactions(users=users, items=items, n_users=n_users, n_items=n_items), seed=seed)
    q = torch.arange(n_users).repeat(5)
    neg = s.sample(q, 3).numpy()
    known = {(int(u), int(i)) for u, i in pairs}
    full = {u for u in range(n_users) if sum((u, i) in known for i in range(n_items)) == n_items}
    for u, row in zip(q.tolist(), neg):
        assert all(0 <= i < n_items for i in row)
        if u not in full:
            assert not any((u, int(i)) in known for i in row)
