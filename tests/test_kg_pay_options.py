"""Options that change how the KG meets recommendation in ktup (docs/KG_DIAGNOSIS.md):
train.kg_loss_weight (a weight on the KG loss) and model.entity_rec_grad (whether the rec loss
updates entity rows)."""

from __future__ import annotations

import pytest
import torch

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.models import build_model
from ktup.training import train
from ktup.training.schedule import joint_loss
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def _batches(ds):
    users, pos = torch.as_tensor(ds.train.users[:8]), torch.as_tensor(ds.train.items[:8])
    neg = (pos + 1) % ds.n_items
    kg = torch.as_tensor(ds.kg_train[:8])
    h, r, t = kg[:, 0], kg[:, 1], kg[:, 2]
    return (users, pos, neg), (h, r, t, (h + 1) % ds.n_entities, (t + 1) % ds.n_entities)


def test_weight_scales_the_kg_term_only_and_logs_stay_unweighted():
    ds = tiny_dataset()
    model = build_model(tiny_config("ktup").model, ds).eval()   # eval: no Gumbel noise, deterministic
    rec_args, kg_args = _batches(ds)
    loss1, _, kg1 = joint_loss(model, None, kg_args, 0.9)
    loss3, _, kg3 = joint_loss(model, None, kg_args, 0.9, kg_weight=3.0)
    assert torch.allclose(loss3, 3 * loss1) and torch.equal(kg1, kg3)
    s1, rec, kg = joint_loss(model, rec_args, kg_args, 0.7)
    s3, _, _ = joint_loss(model, rec_args, kg_args, 0.7, kg_weight=3.0)
    assert torch.allclose(s1, 0.7 * rec + 0.3 * kg) and torch.allclose(s3, 0.7 * rec + 0.3 * 3.0 * kg)
    r1, _, _ = joint_loss(model, rec_args, None, 0.7, kg_weight=3.0)
    assert torch.equal(r1, rec)


def test_default_is_the_paper_and_a_weight_changes_training(tmp_path):
    ds = tiny_dataset()
    runs = {w: train(tiny_config("ktup", epochs=1, kg_loss_weight=w), dataset=ds, out=str(tmp_path / f"w{w}"),
                     progress="quiet", test=False) for w in (1.0, 10.0)}
    base = train(tiny_config("ktup", epochs=1), dataset=ds, out=str(tmp_path / "base"), progress="quiet", test=False)
    e = {k: r.model.entity.weight for k, r in runs.items()}
    assert torch.equal(base.model.entity.weight, e[1.0])
    assert not torch.allclose(e[1.0], e[10.0])


@pytest.mark.parametrize("bad", [0, -1])
def test_weight_must_be_positive(bad):
    with pytest.raises(ConfigError, match="train.kg_loss_weight: must be > 0"):
        Config().apply_overrides([f"kg_loss_weight={bad}"])


def _model(entity_rec_grad: bool):
    ds = tiny_dataset()
    cfg = tiny_config("ktup").model
    cfg.entity_rec_grad = entity_rec_grad
    torch.manual_seed(0)
    return build_model(cfg, ds).eval(), ds


def test_entity_rec_grad_false_keeps_rec_gradients_off_the_entity_table_only():
    (m_on, ds), (m_off, _) = _model(True), _model(False)
    m_off.load_state_dict(m_on.state_dict())
    rec_args, kg_args = _batches(ds)
    assert torch.equal(m_on.score_all_items(torch.arange(5)), m_off.score_all_items(torch.arange(5)))   # same scores
    for m in (m_on, m_off):
        m.zero_grad()
        m.rec_loss(*rec_args).backward()
    assert m_on.entity.weight.grad.abs().sum() > 0
    assert m_off.entity.weight.grad is None or m_off.entity.weight.grad.abs().sum() == 0
    assert torch.equal(m_on.item.weight.grad, m_off.item.weight.grad)   # items and users learn as before
    m_off.zero_grad()
    m_off.kg_loss(*kg_args).backward()
    assert m_off.entity.weight.grad.abs().sum() > 0                     # the KG still trains entities


def test_entity_rec_grad_is_a_config_key_defaulting_to_the_paper():
    assert Config().model.entity_rec_grad is True
    assert Config().apply_overrides(["entity_rec_grad=false"]).model.entity_rec_grad is False
