"""model.relation_alignment: targets, the loss term, and that the paper's model is unchanged without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.models import build_model
from ktup.models.alignment import alignment_targets, batch_targets


def _brute_targets(d):
    """Per training pair, Σ over the item's KG neighbours (r, nb) of
    (other training items of the user reaching nb through r) / (items reaching nb through r)."""
    kg = d.kg_train
    reach = {}                                     # (r, nb) -> set of items
    ent_item = {int(e): i for i, e in enumerate(d.item_entity) if e >= 0}
    for h, r, t in kg.tolist():
        for a, b in ((h, t), (t, h)):
            if a in ent_item:
                reach.setdefault((r, b), set()).add(ent_item[a])
    hist = {}
    for u, i in zip(d.train.users.tolist(), d.train.items.tolist()):
        hist.setdefault(u, set()).add(i)
    out = {}
    for u, i in zip(d.train.users.tolist(), d.train.items.tolist()):
        w = np.zeros(d.n_relations)
        for (r, nb), items in reach.items():
            if i in items:
                w[r] += len((hist[u] - {i}) & items) / len(items)
        if w.sum() > 0:
            out[u * d.n_items + i] = w / w.sum()
    return out


def test_targets_match_a_brute_force_count(tiny_dataset):
    d = tiny_dataset
    keys, indptr, rel, weight = alignment_targets(d.train.users, d.train.items, d.kg_train, d.item_entity,
                                                  d.n_items, d.n_relations)
    want = _brute_targets(d)
    assert sorted(want) == keys.tolist()
    for row, k in enumerate(keys.tolist()):
        got = np.zeros(d.n_relations)
        got[rel[indptr[row]:indptr[row + 1]]] = weight[indptr[row]:indptr[row + 1]]
        np.testing.assert_allclose(got, want[k], rtol=1e-5)
    T, has = batch_targets(*(torch.as_tensor(x) for x in (keys, indptr, rel, weight)),
                           torch.as_tensor([keys[0], keys[-1], -5, 10**9]), d.n_relations)
    assert has.tolist() == [True, True, False, False]
    assert T[:2].sum(1).tolist() == pytest.approx([1.0, 1.0]) and T[2:].abs().sum() == 0


def test_config_validates_relation_alignment():
    assert Config().model.relation_alignment == 0.0              # the paper's model by default
    with pytest.raises(ConfigError, match="model.relation_alignment"):
        Config().apply_overrides(["model.relation_alignment=-1"])
    assert Config().apply_overrides(["model.relation_alignment=2"]).model.relation_alignment == 2.0


def _model(d, align):
    cfg = Config.from_dict({"model": {"model": "ktup", "embedding_size": 8, "relation_alignment": align}})
    torch.manual_seed(0)
    return build_model(cfg.model, d)


def test_off_is_the_paper_model_and_on_adds_a_term(tiny_dataset):
    d = tiny_dataset
    off, on = _model(d, 0.0), _model(d, 1.0)
    assert set(off.state_dict()) == set(on.state_dict())         # checkpoints unchanged: targets are derived
    assert not any(k.startswith("_ra_") for k in on.state_dict())
    u, i = torch.as_tensor(d.train.users[:64]), torch.as_tensor(d.train.items[:64])
    neg = torch.as_tensor((d.train.items[:64] + 1) % d.n_items)
    off.eval(), on.eval()                                        # no Gumbel noise: deterministic losses
    base = off.rec_loss(u, i, neg)
    assert on._ra_keys.numel() > 0 and off._ra_keys.numel() == 0
    extra = on._pair_extra_loss(u, i, on.user(u), on.item_vectors(i))
    assert float(extra.detach()) > 0
    assert float(on.rec_loss(u, i, neg).detach()) == pytest.approx(float(base.detach()) + float(extra.detach()), rel=1e-5)
    # the term moves the preference logits toward the targets
    extra.backward()
    assert on.preference.weight.grad is not None and on.preference.weight.grad.abs().sum() > 0


def test_training_with_alignment_ties_preferences_to_relations(tiny_dataset, tmp_path):
    """A few epochs on planted data: with the term, the model's own top relation agrees with the
    KG targets of training pairs far more often than without it."""
    from ktup.training import train

    d = tiny_dataset
    keys, indptr, rel, weight = alignment_targets(d.train.users, d.train.items, d.kg_train, d.item_entity,
                                                  d.n_items, d.n_relations)
    T, _ = batch_targets(*(torch.as_tensor(x) for x in (keys, indptr, rel, weight)), torch.as_tensor(keys),
                         d.n_relations)
    u, i = torch.as_tensor(keys // d.n_items), torch.as_tensor(keys % d.n_items)
    agree = {}
    for align in (0.0, 5.0):
        cfg = Config.from_dict({"model": {"model": "ktup", "embedding_size": 16, "relation_alignment": align},
                                "train": {"epochs": 15, "lr": 0.01, "seed": 1, "patience": 0, "threads": 1,
                                          "batch_size": 128, "kg_batch_size": 128},
                                "eval": {"kg_eval": False}})
        run = train(cfg, dataset=d, out=str(tmp_path / f"a{align}"), progress="quiet")
        with torch.no_grad():
            top = run.model.preference_logits(u, i).argmax(1)
        agree[align] = float((T.argmax(1) == top).double().mean())
    assert agree[5.0] > agree[0.0] + 0.2, agree
