"""CFKG on tiny data: its equations, training, and the fast full-ranking path (the contract
tests in test_contract.py cover resume, export, recommend and serve)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ktup.models.cfkg import CFKG
from ktup.training import train
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def test_score_is_a_translation_by_interact():
    ie = np.array([1, -1])
    m = CFKG(2, 2, 3, 2, ie, 4, norm="l2")
    assert m.entity.weight.shape[0] == 4 and m.relation.weight.shape[0] == 3   # node for the unlinked item; + interact
    u = m.user.weight[1] + m.relation.weight[2]
    want = -torch.stack([((u - m.entity.weight[1]) ** 2).sum(), ((u - m.entity.weight[3]) ** 2).sum()])
    torch.testing.assert_close(m.score_pairs(torch.tensor([1, 1]), torch.tensor([0, 1])), want)
    assert not CFKG.explains and CFKG.uses_rec and CFKG.uses_kg


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_trains_and_fast_path_equals_pairs(norm, tmp_path):
    ds = tiny_dataset()
    cfg = tiny_config("cfkg", epochs=6, patience=0)
    cfg.model.norm = norm
    run = train(cfg, dataset=ds, out=str(tmp_path / "r"), progress="quiet")
    rows = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if not r.get("final")]
    for key in ("rec_loss", "kg_loss"):
        assert rows[-1][key] < rows[0][key], key
    m = run.model.eval()
    users = torch.arange(ds.n_users)
    items = torch.randint(0, ds.n_items, (ds.n_users,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = m.score_all_items(users)
        torch.testing.assert_close(m.score_pairs(users, items), full[users, items], rtol=1e-4, atol=1e-4)
        kg = torch.as_tensor(ds.kg_train[:10])
        torch.testing.assert_close(m.score_tails(kg[:, 0], kg[:, 1])[torch.arange(10), kg[:, 2]],
                                   m.score_triples(kg[:, 0], kg[:, 1], kg[:, 2]), rtol=1e-4, atol=1e-4)
    assert float(m.user.weight.detach().norm(dim=1).max()) <= 1.0 + 1e-5      # max_norm clip
