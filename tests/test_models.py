"""Models: the fast scoring paths agree with the plain per-pair formula for every option,
losses behave, constraints and pre-training hold."""

from __future__ import annotations

import itertools

import pytest
import torch

from ktup.config import ModelConfig
from ktup.errors import ConfigError, KtupError
from ktup.models import MODELS, build_model
from ktup.models import functional as fn

from _model_fakes import D, N_ENT, N_ITEMS, N_REL, N_USERS, fake_dataset, make


def reference_distance(m, u: int, i: int) -> float:
    """The spec's formula written out for one pair, no shared code paths with the model."""
    uv = m.user.weight[u]
    iv = m.item.weight[i]
    if m.name == "ktup":
        e = int(m.item_entity[i])
        if e < m.n_entities:
            iv = iv + m.entity.weight[e]
        P = m.preference.weight + m.relation.weight
        W = m.preference_norm.weight + m.relation_norm.weight
        if m.combine == "mean":
            P, W = P / 2, W / 2
    else:
        P, W = m.preference.weight, m.preference_norm.weight
    logits = P @ (uv + iv)
    if m.scoring == "expected":                             # softmax-weighted mean of the K distances
        a = torch.softmax(logits, 0)
        total = 0.0
        for k in range(P.shape[0]):
            w = W[k] / W[k].norm() if m.unit_normals else W[k]
            v = (uv - (w @ uv) * w) + P[k] - (iv - (w @ iv) * w)
            total = total + a[k] * (v.abs().sum() if m.norm == "l1" else (v * v).sum())
        return float(torch.as_tensor(total).detach())
    if m.induction == "soft":
        a = torch.softmax(logits, 0)
    else:
        a = torch.zeros_like(logits)
        a[logits.argmax()] = 1
    p, w = a @ P, a @ W
    if m.unit_normals:
        w = w / w.norm()
    v = (uv - (w @ uv) * w) + p - (iv - (w @ iv) * w)
    return float(v.abs().sum() if m.norm == "l1" else (v * v).sum())


PREF_OPTIONS = list(itertools.product(["ktup", "tup"], ["soft", "hard", "expected"], ["l1", "l2"], ["sum", "mean"], [True, False]))


@pytest.mark.parametrize("inference", ["induced", "expected"])
@pytest.mark.parametrize("model,induction,norm,combine,unit", PREF_OPTIONS)
def test_preference_fast_path_matches_plain_formula(model, induction, norm, combine, unit, inference):
    if model == "tup" and combine == "mean":
        pytest.skip("combine only applies to ktup")
    m = make(model, induction=induction, norm=norm, combine=combine, unit_normals=unit, inference=inference)
    m.memory_budget_mb = 0.001                              # force many item chunks
    users = torch.arange(N_USERS)
    with torch.no_grad():
        full = m.score_all_items(users)                     # (U, N) fast path
        uu, ii = torch.meshgrid(users, torch.arange(N_ITEMS), indexing="ij")
        pairs = m.score_pairs(uu.reshape(-1), ii.reshape(-1)).reshape(N_USERS, N_ITEMS)
        ref = torch.tensor([[-reference_distance(m, u, i) for i in range(N_ITEMS)] for u in range(N_USERS)],
                           dtype=torch.float64)
        sub = torch.tensor([3, 0, 17, 17, 22])
        chunk = m.score_all_items(users, sub)
    assert full.shape == (N_USERS, N_ITEMS)
    torch.testing.assert_close(pairs, ref, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(full, ref, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(chunk, ref[:, sub], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("induction,norm", list(itertools.product(["soft", "hard"], ["l1", "l2"])))
def test_fast_path_float32_close(induction, norm):
    m = make("ktup", induction=induction, norm=norm).float()
    users = torch.arange(N_USERS)
    with torch.no_grad():
        full = m.score_all_items(users)
        uu, ii = torch.meshgrid(users, torch.arange(N_ITEMS), indexing="ij")
        pairs = m.score_pairs(uu.reshape(-1), ii.reshape(-1)).reshape(N_USERS, N_ITEMS)
    torch.testing.assert_close(full, pairs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["ktup", "tup"])
@pytest.mark.parametrize("induction,norm,unit", list(itertools.product(["soft", "hard"], ["l1", "l2"], [True, False])))
@pytest.mark.parametrize("inference", ["induced", "expected"])
def test_per_preference_scores_and_logits(model, induction, norm, unit, inference):
    m = make(model, induction=induction, norm=norm, unit_normals=unit, inference=inference)
    users, items = torch.tensor([0, 1, 6, 6]), torch.tensor([2, 0, 4, 22])
    with torch.no_grad():
        per_k = m.score_pairs_per_preference(users, items)
        logits = m.preference_logits(users, items)
        s = m.score_pairs(users, items)
    K = m.num_preferences
    assert per_k.shape == (4, K) and logits.shape == (4, K)
    if m.scoring == "hard":                                 # the induced preference's score is the pair's score
        torch.testing.assert_close(per_k.gather(1, logits.argmax(1, keepdim=True))[:, 0], s)
    elif m.scoring == "expected":                           # the softmax(α)-weighted mean of the columns
        torch.testing.assert_close((torch.softmax(logits, 1) * per_k).sum(1), s)
    # column k is the plain formula with preference k forced
    P, W = m.preference_tables()
    for k in (0, K - 1):
        u, i = m.user.weight[users], m.item_vectors(items)
        w = fn.normal(W[k], unit)
        v = fn.project(u, w) + P[k] - fn.project(i, w)
        torch.testing.assert_close(per_k[:, k], -fn.distance(v, norm))


def test_preference_relation():
    assert make("ktup").preference_relation == list(range(N_REL))
    assert make("tup").preference_relation is None
    assert MODELS["ktup"].explains and MODELS["tup"].explains and not MODELS["bpr"].explains


@pytest.mark.parametrize("model,norm,unit", [("transh", "l1", True), ("transh", "l2", True), ("transh", "l1", False),
                                             ("transh", "l2", False), ("transe", "l1", True), ("transe", "l2", True),
                                             ("ktup", "l1", True), ("ktup", "l2", False)])
def test_kg_tails_heads_match_triples(model, norm, unit):
    m = make(model, norm=norm, unit_normals=unit)
    m.memory_budget_mb = 0.001
    h, r, t = torch.tensor([0, 5, 30]), torch.tensor([0, 4, 2]), torch.tensor([1, 1, 29])
    E = torch.arange(N_ENT)
    with torch.no_grad():
        tails = m.score_tails(h, r)
        heads = m.score_heads(r, t)
        ref_t = m.score_triples(h[:, None].expand(-1, N_ENT), r[:, None].expand(-1, N_ENT), E[None].expand(3, -1))
        ref_h = m.score_triples(E[None].expand(3, -1), r[:, None].expand(-1, N_ENT), t[:, None].expand(-1, N_ENT))
        sub = torch.tensor([4, 9])
        tails_sub = m.score_tails(h, r, sub)
    assert tails.shape == (3, N_ENT)                        # the padding entity of ktup is not a candidate
    torch.testing.assert_close(tails, ref_t)
    torch.testing.assert_close(heads, ref_h)
    torch.testing.assert_close(tails_sub, ref_t[:, sub])
    # triples against the written-out TransH formula
    he, re_, te = m.entity.weight[h], m.relation.weight[r], m.entity.weight[t]
    if model != "transe":
        w = m.relation_norm.weight[r]
        w = w / w.norm(dim=1, keepdim=True) if unit else w
        he, te = he - (he * w).sum(1, keepdim=True) * w, te - (te * w).sum(1, keepdim=True) * w
    v = he + re_ - te
    expect = -(v.abs().sum(1) if norm == "l1" else (v * v).sum(1))
    torch.testing.assert_close(m.score_triples(h, r, t), expect)


def test_bpr_scores():
    m = make("bpr")
    users = torch.tensor([0, 3])
    full = m.score_all_items(users)
    torch.testing.assert_close(full[1, 5], m.score_pairs(torch.tensor([3]), torch.tensor([5]))[0])
    torch.testing.assert_close(full, m.user.weight[users] @ m.item.weight.T)


# ------------------------------------------------------------------ losses and training behaviour
@pytest.mark.parametrize("model", ["ktup", "tup", "bpr"])
@pytest.mark.parametrize("n_neg", [0, 3])
def test_rec_loss_shapes_and_gradients(model, n_neg):
    m = make(model, induction="hard").train()
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    neg = torch.tensor([4, 5, 6]) if n_neg == 0 else torch.randint(0, N_ITEMS, (3, n_neg))
    loss = m.rec_loss(users, pos, neg)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert m.user.weight.grad[:3].abs().sum() > 0
    if model != "bpr":
        assert m.preference.weight.grad.abs().sum() > 0    # ST-Gumbel passes gradient to every preference


def test_rec_loss_is_bpr_of_scores():
    m = make("ktup", induction="soft")
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([4, 5])
    s_pos, s_neg = m.score_pairs(users, pos), m.score_pairs(users, neg)
    expect = -torch.log(torch.sigmoid(s_pos - s_neg)).mean()
    torch.testing.assert_close(m.rec_loss(users, pos, neg), expect)


def test_kg_loss_margin_and_constraints():
    m = make("transh", kg_constraint_weight=0.0, margin=1.5)
    h, r, t = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3])
    nh, nt = torch.tensor([0, 7]), torch.tensor([9, 3])
    pos, neg = -m.score_triples(h, r, t), -m.score_triples(nh, r, nt)
    torch.testing.assert_close(m.kg_loss(h, r, t, nh, nt), torch.relu(pos - neg + 1.5).mean())
    m.kg_constraint_weight = 0.5
    ents = m.entity.weight[torch.cat([h, t, nh, nt])]
    cons = fn.orthogonal_loss(m.relation.weight[r], m.relation_norm.weight[r]) + fn.entity_norm_loss(ents)
    torch.testing.assert_close(m.kg_loss(h, r, t, nh, nt), torch.relu(pos - neg + 1.5).mean() + 0.5 * cons / 2)
    # several negatives per triple
    loss = m.kg_loss(h, r, t, torch.stack([nh, h], 1), torch.stack([nt, torch.tensor([5, 6])], 1))
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_ktup_padding_entity_never_trained():
    m = make("ktup", kg_constraint_weight=0.1, align_loss=True).train()
    pad = m.n_entities
    assert torch.all(m.entity.weight[pad] == 0)
    opt = torch.optim.Adam(m.parameters(), lr=0.1, weight_decay=0.1)
    unlinked = torch.tensor([0, 4, 8])                      # item_entity[::4] = -1
    for _ in range(3):
        opt.zero_grad()
        loss = m.rec_loss(torch.tensor([0, 1, 2]), unlinked, torch.tensor([1, 2, 3]))
        loss = loss + m.kg_loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), torch.tensor([0]), torch.tensor([3]))
        loss.backward()
        opt.step()
    assert torch.all(m.entity.weight[pad] == 0)
    # unlinked items are scored with ĩ = i
    torch.testing.assert_close(m.item_vectors(unlinked), m.item.weight[unlinked])


def test_hard_induction_deterministic_in_eval_noisy_in_train():
    m = make("ktup", induction="hard")
    users, items = torch.arange(N_USERS).repeat(3), torch.arange(N_USERS * 3) % N_ITEMS
    a, b = m.score_pairs(users, items), m.score_pairs(users, items)
    torch.testing.assert_close(a, b)
    m.train()
    torch.testing.assert_close(m.score_pairs(users, items), a)     # scores never use noise
    losses = {float(m.rec_loss(users, items, (items + 1) % N_ITEMS).detach()) for _ in range(5)}
    assert len(losses) > 1                                  # the training loss does


@pytest.mark.parametrize("model", ["ktup", "tup"])
def test_expected_induction_trains_on_the_mean_distance(model):
    """induction=expected: the loss is deterministic even in train mode and equals BPR on the
    softmax-weighted mean of the per-preference distances, which is also what is scored."""
    m = make(model, induction="expected").train()
    users, pos = torch.arange(N_USERS), torch.arange(N_USERS) % N_ITEMS
    neg = (pos[:, None] + torch.tensor([1, 2])) % N_ITEMS            # (B, 2)
    losses = [m.rec_loss(users, pos, neg) for _ in range(3)]
    torch.testing.assert_close(losses[0], losses[1])
    s_pos = m.score_pairs(users, pos)
    s_neg = m.score_pairs(users[:, None].expand_as(neg).reshape(-1), neg.reshape(-1)).reshape(neg.shape)
    torch.testing.assert_close(losses[0], torch.nn.functional.softplus(s_neg - s_pos[:, None]).mean())
    ref = torch.tensor([-reference_distance(m, int(u), int(i)) for u, i in zip(users, pos)], dtype=torch.float64)
    torch.testing.assert_close(s_pos, ref)
    losses[0].backward()
    assert m.preference.weight.grad.abs().sum() > 0          # the weights are learned through α


def test_expected_inference_changes_scores_not_training():
    """inference=expected on a hard model: same parameters, same noisy training loss, but the
    deterministic score is the mean distance under the Gumbel-max choice (softmax α), not argmax α."""
    hard, exp = make("ktup", induction="hard", inference="induced"), make("ktup", induction="hard", inference="expected")
    users, items = torch.arange(N_USERS), torch.arange(N_USERS) % N_ITEMS
    per_k = -hard.score_pairs_per_preference(users, items)                      # (B, K) distances
    a = torch.softmax(hard.preference_logits(users, items), -1)
    torch.testing.assert_close(exp.score_pairs(users, items), -(a * per_k).sum(-1))
    torch.testing.assert_close(hard.score_pairs(users, items), -per_k.gather(1, a.argmax(1, keepdim=True))[:, 0])
    hard.train(), exp.train()
    torch.manual_seed(5)
    l1 = hard.rec_loss(users, items, (items + 1) % N_ITEMS)
    torch.manual_seed(5)
    torch.testing.assert_close(exp.rec_loss(users, items, (items + 1) % N_ITEMS), l1)


def test_unknown_induction_or_inference_is_a_config_error():
    with pytest.raises(ConfigError, match="model.induction"):
        make("tup", induction="sampled")
    with pytest.raises(ConfigError, match="model.inference"):
        make("ktup", inference="mode")


def test_transe_constrain_renormalises_entities():
    m = make("transe")
    m.constrain_()
    torch.testing.assert_close(m.entity.weight.norm(dim=1), torch.ones(N_ENT, dtype=torch.float64))


def test_init_from_pretrained():
    ktup, tup, transh = make("ktup", seed=1), make("tup", seed=2), make("transh", seed=3)
    ktup.init_from(tup).init_from(transh)
    for name in ("user", "item", "preference", "preference_norm"):
        torch.testing.assert_close(getattr(ktup, name).weight, getattr(tup, name).weight)
    torch.testing.assert_close(ktup.entity.weight[:N_ENT], transh.entity.weight)
    assert torch.all(ktup.entity.weight[N_ENT] == 0)
    torch.testing.assert_close(ktup.relation_norm.weight, transh.relation_norm.weight)
    with pytest.raises(KtupError):
        ktup.init_from(make("bpr"))
    torch.manual_seed(0)
    other = build_model(ModelConfig(model="tup", embedding_size=D, num_preferences=3), fake_dataset())
    with pytest.raises(KtupError, match="preference"):
        ktup.init_from(other.double())


def test_build_errors():
    with pytest.raises(ConfigError, match="num_preferences"):
        build_model(ModelConfig(model="tup"), fake_dataset(n_rel=0))
    with pytest.raises(KtupError):
        build_model(ModelConfig(model="ktup"), fake_dataset(n_rel=0))
    m = build_model(ModelConfig(model="tup", num_preferences=4), fake_dataset(n_rel=0))
    assert m.num_preferences == 4


def test_initial_rows_unit_norm():
    torch.manual_seed(0)
    m = build_model(ModelConfig(model="ktup", embedding_size=D), fake_dataset())
    for emb in (m.user, m.item, m.preference, m.relation_norm):
        torch.testing.assert_close(emb.weight.norm(dim=1), torch.ones(emb.weight.shape[0]))
    torch.testing.assert_close(m.entity.weight[:N_ENT].norm(dim=1), torch.ones(N_ENT))


@pytest.mark.parametrize("norm,with_normals,grouped", [("l1", True, True), ("l1", True, False), ("l1", False, False),
                                                       ("l2", True, False), ("l2", False, False)])
def test_hyperplane_distance_paths(norm, with_normals, grouped):
    from ktup.models.scoring import hyperplane_distance_all

    g = torch.Generator().manual_seed(0)
    Q, C = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(9, 5, generator=g, dtype=torch.float64)
    rel = torch.tensor([0, 2, 0, 1, 2, 2])
    Wn = fn.unit(torch.randn(3, 5, generator=g, dtype=torch.float64))[rel] if with_normals else None
    out = hyperplane_distance_all(Q, Wn, C, norm=norm, budget_mb=1e-4, groups=rel if grouped else None)
    Cp = C[None] if Wn is None else fn.project(C[None], Wn[:, None])                # (B, M, d)
    torch.testing.assert_close(out, fn.distance(Q[:, None] - Cp, norm))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_contract(name, tmp_path):
    """Every registered model: flags match the methods it offers, scores have the contract's
    shapes and survive a state_dict round trip, losses give gradients."""
    m = make(name)
    cls = MODELS[name]
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    h, r, t = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    if cls.uses_rec:
        assert m.score_pairs(users, items).shape == (3,)
        assert m.score_all_items(users).shape == (3, N_ITEMS)
        m.train()
        m.rec_loss(users, items, torch.tensor([6, 7, 8])).backward()
        m.eval()
    else:
        with pytest.raises(NotImplementedError):
            m.score_all_items(users)
    if cls.uses_kg:
        assert m.score_tails(h, r).shape == (3, N_ENT) and m.score_heads(r, t).shape == (3, N_ENT)
        m.kg_loss(h, r, t, h, torch.tensor([6, 7, 8])).backward()
    else:
        with pytest.raises(NotImplementedError):
            m.score_tails(h, r)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    m2 = make(name, seed=99)
    m2.load_state_dict(torch.load(tmp_path / "m.pt"))
    if cls.uses_rec:
        torch.testing.assert_close(m2.score_all_items(users), m.score_all_items(users))
    if cls.uses_kg:
        torch.testing.assert_close(m2.score_tails(h, r), m.score_tails(h, r))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("induction,norm", list(itertools.product(["soft", "hard"], ["l1", "l2"])))
def test_fast_paths_on_cuda_match_cpu(induction, norm):
    m = make("ktup", induction=induction, norm=norm)
    users = torch.arange(N_USERS)
    cpu = (m.score_all_items(users), m.score_tails(users, users % N_REL))
    m.cuda()
    gpu = (m.score_all_items(users.cuda()), m.score_tails(users.cuda(), users.cuda() % N_REL))
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a)


@pytest.mark.parametrize("induction,norm", list(itertools.product(["soft", "hard"], ["l1", "l2"])))
def test_edge_shapes(induction, norm):
    m = make("ktup", induction=induction, norm=norm)
    assert m.score_all_items(torch.tensor([0, 1]), torch.tensor([], dtype=torch.long)).shape == (2, 0)
    assert m.score_all_items(torch.tensor([], dtype=torch.long)).shape == (0, N_ITEMS)
    assert m.score_tails(torch.tensor([0]), torch.tensor([1]), torch.tensor([], dtype=torch.long)).shape == (1, 0)
    # one preference: soft and hard induction coincide
    torch.manual_seed(0)
    tup = build_model(ModelConfig(model="tup", embedding_size=D, num_preferences=1, induction=induction, norm=norm),
                      fake_dataset()).eval()
    other = "hard" if induction == "soft" else "soft"
    tup2 = build_model(ModelConfig(model="tup", embedding_size=D, num_preferences=1, induction=other, norm=norm),
                       fake_dataset()).eval()
    tup2.load_state_dict(tup.state_dict())
    users = torch.arange(N_USERS)
    torch.testing.assert_close(tup.score_all_items(users), tup2.score_all_items(users))


def test_expected_fast_path_survives_extreme_logits():
    """The L2 expected path factorises softmax(α) into per-user and per-item exponentials; with
    logit spreads far beyond float32's exponent range the normaliser underflows and those pairs
    must fall back to the direct formula instead of returning inf/NaN."""
    m = make("ktup", induction="hard", norm="l2", inference="expected").float()
    with torch.no_grad():
        m.preference.weight.mul_(400.0)                     # logits spread over hundreds
    users = torch.arange(N_USERS)
    with torch.no_grad():
        full = m.score_all_items(users)
        uu, ii = torch.meshgrid(users, torch.arange(N_ITEMS), indexing="ij")
        pairs = m.score_pairs(uu.reshape(-1), ii.reshape(-1)).reshape(N_USERS, N_ITEMS)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(full, pairs, rtol=1e-4, atol=1e-2)
