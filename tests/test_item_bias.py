"""model.item_bias: an optional learned per-item bias added to tup/ktup scores (off by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.models.tup import KTUP, TUP


def _models():
    torch.manual_seed(0)
    yield KTUP(6, 5, 7, 2, np.array([0, 1, 2, -1, 3]), 4, norm="l2", induction="hard", item_bias=True)
    yield KTUP(6, 5, 7, 2, np.array([0, 1, 2, -1, 3]), 4, norm="l1", induction="soft", item_bias=True)
    yield TUP(6, 5, 3, 4, norm="l2", induction="soft", item_bias=True)


@pytest.mark.parametrize("model", list(_models()), ids=["ktup-hard-l2", "ktup-soft-l1", "tup-soft-l2"])
def test_bias_enters_every_scoring_path_equally(model):
    with torch.no_grad():
        model.bias.weight.copy_(torch.arange(5, dtype=torch.float32)[:, None] * 0.7)
    model.eval()
    users = torch.arange(6)
    fast = model.score_all_items(users)                                    # (6, 5)
    pairs = model.score_pairs(users.repeat_interleave(5), torch.arange(5).repeat(6)).reshape(6, 5)
    assert torch.allclose(fast, pairs, atol=1e-5)
    chunk = model.score_all_items(users, torch.tensor([4, 1]))
    assert torch.allclose(chunk, fast[:, [4, 1]], atol=1e-5)
    per_k = model.score_pairs_per_preference(users, torch.tensor([0, 1, 2, 3, 4, 0]))
    no_bias = per_k - model.bias.weight[[0, 1, 2, 3, 4, 0], 0][:, None]
    assert torch.allclose(per_k[:, 1:] - per_k[:, :1], no_bias[:, 1:] - no_bias[:, :1])  # bias is preference-free


def test_bias_is_trained_by_the_rec_loss_and_off_by_default():
    model = next(_models())
    model.train()
    loss = model.rec_loss(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([[3, 4], [4, 3], [3, 0]]))
    loss.backward()
    assert model.bias.weight.grad is not None and model.bias.weight.grad.abs().sum() > 0
    assert Config().model.item_bias is False
    assert KTUP(6, 5, 7, 2, np.array([0, 1, 2, -1, 3]), 4).bias is None
