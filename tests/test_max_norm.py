"""model.max_norm: tup/ktup keep user, item and entity rows inside the ball after each step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.models.tup import KTUP, TUP


def _ktup(max_norm: float) -> KTUP:
    torch.manual_seed(0)
    return KTUP(6, 5, 7, 2, np.array([0, 1, 2, -1, 3]), 4, norm="l2", max_norm=max_norm)


def test_ktup_constrain_clips_long_rows_and_keeps_short_ones_and_padding():
    m = _ktup(1.0)
    with torch.no_grad():
        m.user.weight[:3].mul_(5.0)          # long rows
        m.user.weight[3:].mul_(0.5)          # short rows stay as they are
        m.entity.weight[:-1].mul_(3.0)
    short = m.user.weight[3:].clone()
    m.constrain_()
    for t in (m.user.weight, m.item.weight, m.entity.weight[:-1]):
        assert (t.norm(dim=1) <= 1.0 + 1e-6).all()
    assert torch.allclose(m.user.weight[:3].norm(dim=1), torch.ones(3))
    assert torch.equal(m.user.weight[3:], short)
    assert torch.count_nonzero(m.entity.weight[-1]) == 0


def test_max_norm_zero_leaves_rows_alone():
    m = _ktup(0.0)
    with torch.no_grad():
        m.user.weight.mul_(5.0)
    before = m.user.weight.clone()
    m.constrain_()
    assert torch.equal(m.user.weight, before)


def test_tup_clips_after_an_optimiser_step():
    torch.manual_seed(0)
    m = TUP(4, 5, 3, 4, max_norm=1.0)
    opt = torch.optim.SGD(m.parameters(), lr=50.0)    # a huge step pushes rows out of the ball
    m.rec_loss(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 4])).backward()
    opt.step()
    m.constrain_()
    assert (m.user.weight.norm(dim=1) <= 1.0 + 1e-6).all()
    assert (m.item.weight.norm(dim=1) <= 1.0 + 1e-6).all()


def test_config_key_and_validation():
    cfg = Config()
    cfg.apply_overrides(["max_norm=0"])
    assert cfg.model.max_norm == 0.0
    with pytest.raises(ConfigError, match="max_norm"):
        Config().apply_overrides(["max_norm=-1"])


def test_user_max_norm_gives_users_their_own_radius():
    torch.manual_seed(0)
    m = KTUP(6, 5, 7, 2, np.array([0, 1, 2, -1, 3]), 4, norm="l2", max_norm=1.0, user_max_norm=0.5)
    with torch.no_grad():
        for t in (m.user.weight, m.item.weight, m.entity.weight[:-1]):
            t.mul_(5.0)
    m.constrain_()
    assert torch.allclose(m.user.weight.norm(dim=1), torch.full((6,), 0.5))
    assert torch.allclose(m.item.weight.norm(dim=1), torch.ones(5))
    assert torch.allclose(m.entity.weight[:-1].norm(dim=1), torch.ones(7))
    cfg = Config()
    with pytest.raises(ConfigError, match="model.user_max_norm"):
        cfg.apply_overrides(["user_max_norm=-1"]).validate()
