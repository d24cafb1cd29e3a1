"""Row-wise sparse updates: only the rows a batch touched move, lazy Adam is Adam on those rows,
training with sparse updates learns and resumes exactly, and each table is gathered once a step."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ktup.training import train
from ktup.training.sparse import LazyAdam, add_weight_decay_, clip_grad_norm_, enable_sparse
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def _table(sparse: bool, seed: int = 0) -> nn.Embedding:
    torch.manual_seed(seed)
    return nn.Embedding(30, 4, sparse=sparse)


def _steps(emb: nn.Embedding, opt, batches) -> None:
    for ids in batches:
        opt.zero_grad(set_to_none=True)
        (emb(ids) ** 2).sum().mul(0.5).add(emb(ids).sum()).backward()
        opt.step()


def test_lazy_adam_equals_adam_on_rows_touched_every_step():
    ids = torch.tensor([3, 7, 7, 12])                 # a repeated id: its gradients add up
    dense, sparse = _table(False), _table(True)
    _steps(dense, torch.optim.Adam(dense.parameters(), lr=0.05, weight_decay=0.01), [ids] * 5)
    _steps(sparse, LazyAdam(sparse.parameters(), lr=0.05, weight_decay=0.01), [ids] * 5)
    assert torch.allclose(dense.weight[ids], sparse.weight[ids], atol=1e-6)


def test_untouched_rows_and_their_moments_do_not_move():
    emb = _table(True)
    before = emb.weight.detach().clone()
    opt = LazyAdam(emb.parameters(), lr=0.1, weight_decay=0.1)   # lazy decay: only touched rows decay
    _steps(emb, opt, [torch.tensor([1, 2]), torch.tensor([2, 5])])
    moved = (emb.weight != before).any(1)
    assert moved.nonzero().flatten().tolist() == [1, 2, 5]
    m = opt.state[emb.weight]["exp_avg"]
    assert (m.abs().sum(1) > 0).nonzero().flatten().tolist() == [1, 2, 5]


def test_dense_parameters_get_plain_adam():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3, 4)), None
    b = nn.Parameter(a.detach().clone())
    oa, ob = torch.optim.Adam([a], lr=0.01, weight_decay=0.1), LazyAdam([b], lr=0.01, weight_decay=0.1)
    for _ in range(4):
        for p, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (p ** 3).sum().backward()
            o.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_clip_and_lazy_weight_decay_on_sparse_gradients():
    emb = _table(True)
    (emb(torch.tensor([1, 1, 4])) * 100).sum().backward()
    total = clip_grad_norm_([emb.weight], 1.0)
    assert total > 1.0
    assert abs(float(emb.weight.grad.coalesce().values().norm()) - 1.0) < 1e-4
    before = emb.weight.grad.coalesce().values().clone()
    add_weight_decay_([emb.weight], 0.5)
    g = emb.weight.grad.coalesce()
    assert g.indices()[0].tolist() == [1, 4]         # still only the touched rows
    assert torch.allclose(g.values(), before + 0.5 * emb.weight.detach()[[1, 4]])


def test_enable_sparse_switches_only_the_big_tables():
    from ktup.models import build_model

    cfg = tiny_config("ktup")
    model = build_model(cfg.model, tiny_dataset())
    assert enable_sparse(model) == ["user", "item", "entity"]
    assert not model.relation.sparse and not model.preference.sparse and not model.preference_norm.sparse
    ds = tiny_dataset()
    u, i = torch.as_tensor(ds.train.users[:8]), torch.as_tensor(ds.train.items[:8])
    model.rec_loss(u, i, (i + 1) % ds.n_items).backward()
    for name in ("user", "item", "entity"):
        g = getattr(model, name).weight.grad
        assert g.is_sparse and g.coalesce().indices().shape[1] <= 16   # rows touched, not the table
    assert not model.preference.weight.grad.is_sparse


@pytest.mark.parametrize("model", ["ktup", "transh", "transe"])
def test_kg_loss_gathers_the_entity_table_once(model):
    from ktup.models import build_model

    ds = tiny_dataset()
    m = build_model(tiny_config(model).model, ds)
    calls = []
    m.entity.register_forward_hook(lambda *a: calls.append(1))
    kg = torch.as_tensor(ds.kg_train[:16])
    h, r, t = kg[:, 0], kg[:, 1], kg[:, 2]
    m.kg_loss(h, r, t, (h + 1) % ds.n_entities, t)
    m.kg_loss(h, r, t, ((h + 1) % ds.n_entities)[:, None].repeat(1, 3), t[:, None].repeat(1, 3))
    assert len(calls) == 2


@pytest.mark.parametrize("model", ["ktup", "bpr"])
def test_sparse_training_learns_and_resumes_exactly(tmp_path, model):
    cfg = tiny_config(model, epochs=4, lr=0.05, patience=0, sparse=True)
    full = train(cfg, dataset=tiny_dataset(), out=str(tmp_path / "full"), progress="quiet")
    recs = [json.loads(x) for x in (full.path / "metrics.jsonl").read_text().splitlines()][:-1]
    assert recs[-1]["rec_loss"] < recs[0]["rec_loss"]
    part = train(tiny_config(model, epochs=2, lr=0.05, patience=0, sparse=True), dataset=tiny_dataset(),
                 out=str(tmp_path / "part"), progress="quiet")
    cont = train(tiny_config(model, epochs=4, lr=0.05, patience=0, sparse=True), dataset=tiny_dataset(),
                 resume=str(part.path), progress="quiet")
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, cont.model.state_dict()[k]), k
    assert full.final["test"] == cont.final["test"]


def test_sparse_with_adagrad_sgd_weight_decay_and_clipping(tmp_path):
    for opt in ("adagrad", "sgd"):
        run = train(tiny_config("ktup", epochs=1, sparse=True, optimizer=opt, weight_decay=1e-4, grad_clip=1.0),
                    dataset=tiny_dataset(), out=str(tmp_path / opt), progress="quiet")
        assert run.info["status"] == "finished"


def test_threads_key_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        train(tiny_config("bpr", epochs=1, threads=2), dataset=tiny_dataset(), out=str(tmp_path / "r"),
              progress="quiet")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_transe_renormalises_only_touched_rows_with_sparse_gradients():
    from ktup.models import build_model

    ds = tiny_dataset()
    m = build_model(tiny_config("transe").model, ds)
    enable_sparse(m)
    opt = LazyAdam(m.parameters(), lr=0.1)
    before = m.entity.weight.detach().clone()
    kg = torch.as_tensor(ds.kg_train[:8])
    h, r, t = kg[:, 0], kg[:, 1], kg[:, 2]
    m.kg_loss(h, r, t, (h + 1) % ds.n_entities, t).backward()
    opt.step()
    m.constrain_()
    touched = torch.unique(torch.cat([h, t, (h + 1) % ds.n_entities]))
    norms = m.entity.weight.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    untouched = torch.ones(ds.n_entities, dtype=torch.bool)
    untouched[touched] = False
    assert torch.equal(m.entity.weight.detach()[untouched], before[untouched])


def test_sparse_auto_rows_switches_big_tables_only(tmp_path):
    from ktup.training.setup import uses_sparse
    from ktup.models import build_model

    ds = tiny_dataset()
    cfg = tiny_config("ktup", sparse_auto_rows=10)
    model = build_model(cfg.model, ds)
    assert uses_sparse(cfg.train, model)
    cfg.train.sparse_auto_rows = 10**9
    assert not uses_sparse(cfg.train, model)
    cfg.train.sparse_auto_rows = 0
    assert not uses_sparse(cfg.train, model)
