"""The KG baselines of the paper's comparison (transr, cke, kgat; each also runs the contract tests) on tiny data: they train
(losses fall), score with the contract's shapes, their fast full-ranking path agrees with the
per-pair one, they resume exactly, and their equations hold on hand-made tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ktup.models import MODELS
from ktup.models.cke import CKE
from ktup.models.functional import item_node_rows
from ktup.models.kgat import KGAT, ckg_edges
from ktup.models.transr import TransR
from ktup.training import train
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)

BASELINES = ("transr", "cke", "kgat")


def _losses(run_path) -> list[dict]:
    rows = [json.loads(x) for x in (run_path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if not r.get("final")]


@pytest.mark.parametrize("name", BASELINES)
def test_trains_scores_and_fast_path_agrees(name, tmp_path):
    ds = tiny_dataset()
    run = train(tiny_config(name, epochs=6, patience=0), dataset=ds, out=str(tmp_path / "r"), progress="quiet")
    rows = _losses(run.path)
    for key in ("rec_loss", "kg_loss"):
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            assert vals[-1] < vals[0], (key, vals)
    m = run.model.eval()
    cls = MODELS[name]
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        if cls.uses_rec:
            full = m.score_all_items(users)
            assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
            items = torch.randint(0, ds.n_items, (ds.n_users,), generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(m.score_pairs(users, items), full[users, items], rtol=1e-4, atol=1e-4)
            chunk = torch.tensor([3, 0, 7])
            torch.testing.assert_close(m.score_all_items(users, chunk), full[:, chunk], rtol=1e-4, atol=1e-4)
            assert run.final["test"]["ndcg@10"] >= 0
        if cls.uses_kg:
            kg = torch.as_tensor(ds.kg_train[:20])
            h, r, t = kg[:, 0], kg[:, 1], kg[:, 2]
            tails, heads = m.score_tails(h, r), m.score_heads(r, t)
            assert tails.shape == heads.shape == (20, ds.n_entities)
            assert torch.isfinite(tails).all() and torch.isfinite(heads).all()
            tri = m.score_triples(h, r, t)
            torch.testing.assert_close(tails[torch.arange(20), t], tri, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(heads[torch.arange(20), h], tri, rtol=1e-4, atol=1e-4)
            assert run.final["kg_test"]["mrr"] > 0


@pytest.mark.parametrize("name", BASELINES)
def test_resume_reaches_the_uninterrupted_result(name, tmp_path):
    whole = train(tiny_config(name, epochs=4, patience=0), dataset=tiny_dataset(), out=str(tmp_path / "whole"),
                  progress="quiet")
    part = train(tiny_config(name, epochs=2, patience=0), dataset=tiny_dataset(), out=str(tmp_path / "part"),
                 progress="quiet")
    resumed = train(tiny_config(name, epochs=4, patience=0), resume=str(part.path), progress="quiet")
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(_losses(resumed.path)) == strip(_losses(whole.path))
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------- equations
def test_transr_distance_is_the_papers():
    torch.manual_seed(0)
    m = TransR(6, 2, 4, margin=1.0, kg_constraint_weight=0.0)
    with torch.no_grad():
        m.relation_proj.weight.copy_(torch.randn(2, 16))
    h, r, t = torch.tensor([0, 3]), torch.tensor([1, 0]), torch.tensor([2, 5])
    M = m.relation_proj.weight[r].reshape(2, 4, 4)
    hr = torch.einsum("bd,bde->be", m.entity.weight[h], M)
    tr = torch.einsum("bd,bde->be", m.entity.weight[t], M)
    want = -((hr + m.relation.weight[r] - tr) ** 2).sum(1)
    torch.testing.assert_close(m.score_triples(h, r, t), want)
    # margin loss: one corruption equal to the positive costs exactly the margin
    assert float(m.kg_loss(h, r, t, h, t).detach()) == pytest.approx(1.0)


def test_transr_constraints_clip_rows():
    m = TransR(5, 2, 3)
    with torch.no_grad():
        m.entity.weight.mul_(5.0)
    m.constrain_()
    assert float(m.entity.weight.detach().norm(dim=1).max()) <= 1.0 + 1e-6


def test_cke_item_is_cf_vector_plus_entity_and_unlinked_items_get_zero():
    ie = np.array([2, -1, 0])
    m = CKE(2, 3, 4, 1, ie, 5)
    users = torch.tensor([0, 1, 1])
    items = torch.tensor([0, 1, 2])
    want_items = m.item.weight[items] + torch.stack([m.entity.weight[2], torch.zeros(5), m.entity.weight[0]])
    torch.testing.assert_close(m.score_pairs(users, items), (m.user.weight[users] * want_items).sum(1))
    # the padding entity never moves
    m.rec_loss(users, items, torch.tensor([1, 1, 1])).backward()
    assert float(m.entity.weight.grad[4].abs().sum()) == 0.0


def test_kgat_attention_is_a_softmax_over_each_heads_edges():
    ds = tiny_dataset()
    m = MODELS["kgat"].build(tiny_config("kgat").model, ds)
    att, head = m.attention, m.edge_head
    sums = torch.zeros(m.n_nodes).index_add_(0, head, att)
    has_edges = torch.bincount(head, minlength=m.n_nodes) > 0
    torch.testing.assert_close(sums[has_edges], torch.ones(int(has_edges.sum())))
    # one edge by the plain formula π = (W_r e_t)ᵀ tanh(W_r e_h + e_r), normalised over h's edges
    ego = torch.cat([m.user.weight, m.entity.weight]).detach()
    W = m.relation_proj.weight.detach().reshape(-1, m.embedding_size, m.relation_size)
    mine = (head == head[0]).nonzero().squeeze(1)
    raw = torch.stack([(ego[m.edge_tail[k]] @ W[m.edge_rel[k]]) @ torch.tanh(ego[m.edge_head[k]] @ W[m.edge_rel[k]]
                                                                           + m.relation.weight[m.edge_rel[k]].detach())
                       for k in mine.tolist()])
    torch.testing.assert_close(att[mine], torch.softmax(raw, 0), rtol=1e-5, atol=1e-6)


def test_kgat_graph_holds_interactions_kg_and_inverses():
    ds = tiny_dataset()
    nodes = item_node_rows(ds.item_entity, ds.n_entities).numpy()
    h, t, r = ckg_edges(ds, nodes, ds.n_relations)
    R, U = ds.n_relations, ds.n_users
    pairs = set(zip(h.tolist(), t.tolist(), r.tolist()))
    u0, i0 = int(ds.train.users[0]), int(ds.train.items[0])
    assert (u0, U + nodes[i0], 2 * R) in pairs and (U + nodes[i0], u0, 2 * R + 1) in pairs
    kh, kr, kt = (int(x) for x in ds.kg_train[0])
    assert (U + kh, U + kt, kr) in pairs and (U + kt, U + kh, kr + R) in pairs
    assert len(pairs) == len(h)


def test_kgat_eval_cache_follows_the_weights():
    ds = tiny_dataset()
    m = MODELS["kgat"].build(tiny_config("kgat").model, ds).eval()
    users = torch.arange(4)
    before = m.score_all_items(users).clone()
    with torch.no_grad():
        m.user.weight.mul_(2.0)
    m.train().eval()                       # a training phase invalidates the cache
    assert not torch.allclose(m.score_all_items(users), before)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    m2 = MODELS["kgat"].build(tiny_config("kgat").model, ds).eval()
    m2.score_all_items(users)
    m2.load_state_dict(state)
    torch.testing.assert_close(m2.score_all_items(users), m.score_all_items(users))


def test_kgat_is_registered_with_its_flags():
    for name, rec, kg in (("transr", False, True), ("cke", True, True), ("kgat", True, True)):
        cls = MODELS[name]
        assert (cls.uses_rec, cls.uses_kg, cls.explains) == (rec, kg, False)
    assert MODELS["kgat"] is KGAT


def test_export_reload_and_recommend(tmp_path):
    """Each recommendation baseline: a run exports, reloads with equal scores, recommends, is
    served over HTTP, and refuses to explain with the clear error (no preferences)."""
    httpx = pytest.importorskip("httpx")
    from ktup.serving.app import create_app
    from ktup.serving.loading import load_recommender
    from ktup.serving.server import BackgroundServer
    from ktup.errors import KtupError
    from ktup.explain.recommender import Recommender
    from ktup.serving.export import export_run, load_export
    from ktup.training import load_run
    from test_train_support import train_one_epoch_runs

    paths = train_one_epoch_runs(tmp_path / "runs", ("cke", "kgat"), tiny_dataset, embedding_size=8)
    for name, path in paths.items():
        run = load_run(path)
        model, ds = load_export(export_run(run.path, tmp_path / f"exp-{name}"))
        users = torch.arange(ds.n_users)
        with torch.no_grad():
            assert torch.equal(model.score_all_items(users), run.model.score_all_items(users)), name
        rec = Recommender(model, ds)
        top = rec.recommend(ds.users.token(0), k=5)
        assert len(top) == 5
        with pytest.raises(KtupError, match="unavailable"):
            rec.explain(ds.users.token(0), ds.items.token(0))
        served = load_recommender(path)
        with BackgroundServer(create_app(served)) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
            assert client.get("/health").json()["explains"] is False
            got = client.get(f"/users/{ds.users.token(1)}/recommendations", params={"k": 4}).json()["recommendations"]
            assert [r["item"] for r in got] == [r["item"] for r in served.recommend(ds.users.token(1), k=4)]


@pytest.mark.parametrize("name", BASELINES)
def test_sparse_updates_and_summed_schedule(name, tmp_path):
    """Row-wise sparse updates (lookups give sparse gradients, KGAT's propagation dense ones) and
    the summed joint schedule both train to finite weights."""
    run = train(tiny_config(name, epochs=1, patience=0, sparse=True, schedule="sum"), dataset=tiny_dataset(),
                out=str(tmp_path / "r"), progress="quiet")
    assert all(bool(torch.isfinite(p).all()) for p in run.model.parameters())


def test_model_options_reach_the_models():
    from ktup.config import Config
    from ktup.errors import ConfigError

    ds = tiny_dataset()
    cfg = Config.from_dict({"model": {"model": "kgat", "embedding_size": 8, "kgat": {"layer_sizes": [8, 4],
                                                                                  "mess_dropout": 0.0}}})
    m = MODELS["kgat"].build(cfg.model, ds)
    assert m.layer_sizes == (8, 4) and m.dropout == 0.0
    assert m.propagate().shape == (m.n_nodes, 8 + 8 + 4)
    cfg = Config.from_dict({"model": {"model": "transr", "embedding_size": 8, "transr": {"relation_size": 4}}})
    m = MODELS["transr"].build(cfg.model, ds)
    assert m.relation.weight.shape[1] == 4 and m.score_tails(torch.tensor([0]), torch.tensor([1])).shape == (1, ds.n_entities)
    with pytest.raises(ConfigError, match="layer_size"):
        Config.from_dict({"model": {"model": "kgat", "kgat": {"layer_size": [8]}}})
