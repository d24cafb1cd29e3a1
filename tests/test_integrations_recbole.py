"""The RecBole drop-in (ktup.integrations.recbole).

The core package must never import RecBole: that test always runs. The rest needs RecBole 1.2.1
and skips cleanly without it (the core CI has none); run them in the peer venv:

    benchmarks/peers/recbole/.venv/bin/python -m pytest tests/test_integrations_recbole.py -q
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HAVE_RECBOLE = importlib.util.find_spec("recbole") is not None
needs_recbole = pytest.mark.skipif(not HAVE_RECBOLE, reason="recbole is not installed (peer venv only)")


def test_core_package_never_imports_recbole():
    code = ("import sys, ktup, ktup.models, ktup.evaluation, ktup.integrations; "
            "assert 'recbole' not in sys.modules, 'recbole imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.skipif(HAVE_RECBOLE, reason="recbole is installed")
def test_clear_import_error_without_recbole():
    with pytest.raises(ImportError, match="needs RecBole"):
        import ktup.integrations.recbole  # noqa: F401


# ---------------------------------------------------------------- tiny RecBole dataset
N_USERS, N_ITEMS, N_LINKED = 30, 24, 18


def _write_tiny(root: Path) -> Path:
    """RecBole atomic files: 30 users × 24 items (18 linked to entities; RecBole drops the
    rest), 3 KG relations."""
    rng = np.random.default_rng(0)
    d = root / "tiny"
    d.mkdir(parents=True)
    rows = {(int(u), int(i)) for u in range(N_USERS) for i in rng.choice(N_ITEMS, size=10, replace=False)}
    inter = "".join(f"u{u}\ti{i}\n" for u, i in sorted(rows))
    (d / "tiny.inter").write_text("user_id:token\titem_id:token\n" + inter)
    # items i0..i17 linked to entities e0..e17 (in shuffled order, so ids must be remapped)
    link = "".join(f"i{i}\te{(i * 7) % N_LINKED}\n" for i in rng.permutation(N_LINKED))
    (d / "tiny.link").write_text("item_id:token\tentity_id:token\n" + link)
    rels = ["film.director", "film.genre", "film.actor"]
    kg = []
    for e in range(N_LINKED):
        for k, rel in enumerate(rels):
            kg.append(f"e{e}\t{rel}\tx{(e + k) % 6}_{k}\n")
    (d / "tiny.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n" + "".join(kg))
    return root


@pytest.fixture
def recbole_setup(tmp_path, monkeypatch):
    """(config, dataset, train, valid, test) of our KTUP on the tiny data, RecBole-built."""
    pytest.importorskip("recbole")
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from ktup.integrations.recbole import KTUP

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:1])   # RecBole's Config parses the command line
    data = _write_tiny(tmp_path / "data")
    config = Config(model=KTUP, dataset="tiny", config_dict={
        "data_path": str(data), "load_col": {"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
                                             "link": ["item_id", "entity_id"]},
        "epochs": 2, "train_batch_size": 64, "eval_batch_size": 256, "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved"), "device": "cpu", "use_gpu": False, "seed": 7,
        "metrics": ["Recall", "NDCG", "MRR", "Hit", "Precision"], "topk": [5], "valid_metric": "MRR@5",
        "eval_args": {"mode": "full", "group_by": "user", "order": "RO", "split": {"RS": [0.8, 0.1, 0.1]}},
        "state": "ERROR",
    })
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test


@needs_recbole
def test_mapping_links_items_to_their_entities(recbole_setup):
    from ktup.integrations.recbole import kg_mapping

    _, dataset, train, _, _ = recbole_setup
    m = kg_mapping(train._dataset)
    items = dataset.field2id_token[dataset.iid_field]
    ents = dataset.field2id_token[dataset.entity_field]
    # RecBole drops the interactions of unlinked items, so every item but [PAD] is linked
    assert m.n_items == len(items) == N_LINKED + 1
    linked = m.item_entity >= 0
    assert linked.sum() == N_LINKED
    for i in np.flatnonzero(linked):                         # the entity of item i is the linked one
        assert m.item_entity[i] == i
        assert ents[i] == dataset.item2entity[items[i]]
    assert not linked[0]                                     # [PAD] item
    assert sorted(m.relation_tokens) == ["film.actor", "film.director", "film.genre"]
    rel_tokens = list(dataset.field2id_token[dataset.relation_field])
    assert m.relation_to_ours[rel_tokens.index("[PAD]")] == -1
    assert m.relation_to_ours[rel_tokens.index("[UI-Relation]")] == -1
    for k, tok in enumerate(m.relation_tokens):
        assert m.relation_to_ours[rel_tokens.index(tok)] == k


@needs_recbole
def test_full_sort_predict_matches_predict_and_is_deterministic(recbole_setup):
    import torch
    from recbole.data.interaction import Interaction

    from ktup.integrations.recbole import KTUP

    config, _, train, _, _ = recbole_setup
    model = KTUP(config, train._dataset)
    model.eval()
    users = torch.tensor([1, 5, 17])
    full = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)   # (3, n_items)
    n_items = model.n_items
    assert full.shape == (3, n_items) and n_items == N_LINKED + 1
    uu = users.repeat_interleave(n_items)
    ii = torch.arange(n_items).repeat(len(users))
    pairs = model.predict(Interaction({"user_id": uu, "item_id": ii})).view(len(users), -1)
    torch.testing.assert_close(full, pairs, rtol=1e-4, atol=1e-4)
    again = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    assert torch.equal(full, again)                          # no Gumbel noise at inference
    model.train()                                            # nor in train mode's predict path
    assert torch.equal(model.predict(Interaction({"user_id": uu, "item_id": ii})).view(len(users), -1), pairs)


@needs_recbole
def test_losses_on_recbole_batches_train_the_model(recbole_setup):
    import torch
    from recbole.utils import KGDataLoaderState

    from ktup.integrations.recbole import KTUP

    config, _, train, _, _ = recbole_setup
    model = KTUP(config, train._dataset)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train.set_mode(KGDataLoaderState.RS)
    batch = next(iter(train))
    rec = model.calculate_loss(batch)
    assert rec.dim() == 0 and torch.isfinite(rec)
    rec.backward()
    assert model.ktup.user.weight.grad is not None and model.ktup.user.weight.grad.abs().sum() > 0
    opt.step()
    opt.zero_grad()
    train.set_mode(KGDataLoaderState.KG)
    kg_batch = next(iter(train))
    kg = model.calculate_kg_loss(kg_batch)
    assert kg.dim() == 0 and torch.isfinite(kg)
    kg.backward()
    assert model.ktup.relation.weight.grad.abs().sum() > 0
    assert torch.count_nonzero(model.ktup.entity.weight[model.ktup.n_entities]) == 0   # padding entity


@needs_recbole
def test_run_recbole_trains_and_tests_with_recboles_trainer(tmp_path, monkeypatch):
    pytest.importorskip("recbole")
    from ktup.integrations.recbole import KTUP, run_recbole

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    data = _write_tiny(tmp_path / "data")
    result = run_recbole(model=KTUP, dataset="tiny", config_dict={
        "data_path": str(data), "load_col": {"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
                                             "link": ["item_id", "entity_id"]},
        "epochs": 2, "train_batch_size": 64, "eval_batch_size": 256, "show_progress": False, "state": "ERROR",
        "checkpoint_dir": str(tmp_path / "saved"), "device": "cpu", "use_gpu": False, "topk": [5],
        "metrics": ["Recall", "NDCG", "MRR"], "valid_metric": "MRR@5", "ktup_induction": "soft", "ktup_norm": "l1",
    })
    assert set(result["test_result"]) == {"recall@5", "ndcg@5", "mrr@5"}
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())


@needs_recbole
def test_recbole_config_keys_reach_our_options(recbole_setup):
    from ktup.errors import ConfigError
    from ktup.integrations.recbole import model_options

    config, *_ = recbole_setup
    opts = model_options(config)             # RecBole's KTUP.yaml: L1_flag False, use_st_gumbel True
    assert (opts["norm"], opts["induction"], opts["combine"], opts["unit_normals"]) == ("l2", "hard", "sum", True)
    config.final_config_dict["ktup_norm"] = "l1"
    assert model_options(config)["norm"] == "l1"
    config.final_config_dict["ktup_combine"] = "avg"
    with pytest.raises(ConfigError, match="ktup_combine"):
        model_options(config)
    config.final_config_dict["ktup_combine"] = "mean"
    config.final_config_dict["ktup_inducton"] = "soft"      # a typo is an error, not ignored
    with pytest.raises(ConfigError, match="ktup_inducton: unknown key"):
        model_options(config)
