"""The documented RecBole-style interface (docs/API.md): shapes, gradients, and agreement with
the model's own training and scoring paths."""

from __future__ import annotations

import torch
import pytest

from ktup.errors import KtupError
from ktup.models import functional as fn
from ktup.models.recbole_api import alignLoss, align_loss, orthogonalLoss, orthogonal_loss

from _model_fakes import D, N_ITEMS, N_USERS, make


@pytest.mark.parametrize("inference", ["induced", "expected"])
@pytest.mark.parametrize("induction,norm", [("soft", "l1"), ("hard", "l2"), ("hard", "l1")])
def test_forward_predict_full_sort_agree(induction, norm, inference):
    m = make("ktup", induction=induction, norm=norm, inference=inference)
    users, items = torch.tensor([0, 3, 6]), torch.tensor([1, 4, 22])
    pu, p, pi = m(users, items)                         # nn.Module call → forward
    assert pu.shape == p.shape == pi.shape == (3, D)
    dist = fn.distance(pu + p - pi, norm)
    inter = {"user_id": users, "item_id": items}
    if m.scoring == "expected":                         # forward is the argmax preference's geometry
        k = m.preference_logits(users, items).argmax(1, keepdim=True)
        torch.testing.assert_close(-m.score_pairs_per_preference(users, items).gather(1, k)[:, 0], dist)
    else:
        torch.testing.assert_close(m.predict(inter), -dist)
    torch.testing.assert_close(m.predict(inter), m.score_pairs(users, items))
    full = m.full_sort_predict({"user_id": users})
    assert full.shape == (3 * N_ITEMS,)
    torch.testing.assert_close(full.view(3, -1), m.score_all_items(users))
    torch.testing.assert_close(full.view(3, -1)[torch.arange(3), items], m.predict(inter))


def test_forward_projections_are_on_the_hyperplane():
    m = make("ktup", induction="hard", unit_normals=True)
    users, items = torch.arange(N_USERS), torch.arange(N_USERS)
    pu, _, pi = m(users, items)
    k = m.preference_logits(users, items).argmax(1)
    _, W = m.preference_tables()
    w = fn.unit(W[k])
    torch.testing.assert_close((pu * w).sum(1), torch.zeros(N_USERS, dtype=pu.dtype))
    torch.testing.assert_close((pi * w).sum(1), torch.zeros(N_USERS, dtype=pu.dtype))


def test_calculate_losses_agree_with_model_losses():
    m = make("ktup", induction="soft", align_loss=True)
    inter = {"user_id": torch.tensor([0, 1]), "item_id": torch.tensor([2, 3]), "neg_item_id": torch.tensor([[4, 5], [6, 7]])}
    torch.testing.assert_close(m.calculate_loss(inter), m.rec_loss(inter["user_id"], inter["item_id"], inter["neg_item_id"]))
    kg = {"head_id": torch.tensor([0, 1]), "relation_id": torch.tensor([1, 2]), "tail_id": torch.tensor([3, 4]),
          "neg_tail_id": torch.tensor([5, 6])}
    loss = m.calculate_kg_loss(kg)
    torch.testing.assert_close(loss, m.kg_loss(kg["head_id"], kg["relation_id"], kg["tail_id"], kg["head_id"], kg["neg_tail_id"]))
    loss.backward()
    assert m.relation.weight.grad is not None
    with pytest.raises(KtupError, match="neg_item_id"):
        m.calculate_loss({"user_id": torch.tensor([0]), "item_id": torch.tensor([1])})


def test_st_gumbel_forward_one_hot_backward_soft():
    m = make("ktup")
    logits = torch.randn(64, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    y = m.st_gumbel_softmax(logits, temperature=0.5)
    assert y.shape == (64, 5)
    assert torch.all((y == 0) | (y == 1)) and torch.all(y.sum(1) == 1)     # exactly one-hot forward
    coef = torch.randn(64, 5, dtype=torch.float64)
    (g_st,) = torch.autograd.grad((y * coef).sum(), logits)
    # the same noise again, the soft sample: its gradient must be the straight-through gradient
    torch.manual_seed(3)
    g = fn.gumbel_noise(logits.shape, logits)
    soft = torch.softmax((logits + g) / 0.5, dim=-1)
    (g_soft,) = torch.autograd.grad((soft * coef).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)
    torch.testing.assert_close(y, m.convert_to_one_hot(soft.argmax(1), 5).to(y.dtype))


def test_convert_to_one_hot_shapes():
    oh = fn.convert_to_one_hot(torch.tensor([[0, 2], [1, 1]]), 3)
    assert oh.shape == (2, 2, 3) and oh.dtype == torch.get_default_dtype()
    assert oh[0, 1].tolist() == [0, 0, 1]


def test_module_level_losses():
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    w = torch.tensor([[0.5, 1.0], [1.0, 1.0], [1.0, 0.0]])
    # (0.5)²/1 + 0 (zero r guarded) + 3²/25
    assert orthogonalLoss(r, w).item() == pytest.approx(0.25 + 9 / 25)
    assert orthogonal_loss(r, w).item() == orthogonalLoss(r, w).item()
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert alignLoss(a, b).item() == pytest.approx(5.0)
    assert alignLoss(a, b, L1_flag=True).item() == pytest.approx(3.0)
    assert align_loss(a, b, True).item() == pytest.approx(3.0)
    assert torch.isfinite(orthogonalLoss(torch.zeros(2, 2), torch.ones(2, 2)))


def test_tup_speaks_the_same_interface():
    m = make("tup", induction="hard")
    users, items = torch.tensor([0, 1]), torch.tensor([5, 6])
    torch.testing.assert_close(m.predict({"user_id": users, "item_id": items}), m.score_pairs(users, items))
    with pytest.raises(NotImplementedError):
        m.calculate_kg_loss({"head_id": [0], "relation_id": [0], "tail_id": [1], "neg_tail_id": [2]})
