"""Recommend / explain / quickstart against a real (tiny) trained run on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ktup.cli import main
from ktup.config import Config
from ktup.data.dataset import Interactions
from ktup.explain import Recommender


@pytest.fixture(scope="session")
def ktup_run(tmp_path_factory):
    from ktup.data.synthetic import generate
    from ktup.training import train

    d = generate(n_users=60, n_items=40, n_interactions=1200, n_relations=3, values_per_relation=4, seed=1)
    cfg = Config.from_dict({"model": {"model": "ktup", "embedding_size": 16},
                            "train": {"epochs": 2, "batch_size": 256, "kg_batch_size": 256},
                            "eval": {"kg_eval": False}})
    out = tmp_path_factory.mktemp("runs") / "ktup"
    train(cfg, dataset=d, out=str(out), progress="quiet")
    return out


def test_load_and_recommend_matches_brute_force(ktup_run):
    rec = Recommender.load(ktup_run)
    d = rec.dataset
    seen = Interactions.concat([d.train, d.valid, d.test])
    users = d.users.tokens[:5]
    lists = rec.recommend(users, k=5)
    for user, out in zip(users, lists):
        u = d.users.index(user)
        known = set(seen.items[seen.users == u].tolist())
        assert len(out) == 5 and not {d.items.index(r["item"]) for r in out} & known
        cand = np.array([i for i in range(d.n_items) if i not in known])
        with torch.no_grad():
            s = rec.model.score_pairs(torch.full((len(cand),), u), torch.as_tensor(cand)).numpy()
        brute = [d.items.token(i) for i in cand[np.argsort(-s, kind="stable")[:5]]]
        assert [r["item"] for r in out] == brute
        assert [r["score"] for r in out] == sorted((r["score"] for r in out), reverse=True)


def test_explain_real_run_relations_and_evidence(ktup_run):
    rec = Recommender.load(ktup_run)
    user = rec.dataset.users.tokens[0]
    item = rec.recommend(user, k=1)[0]["item"]
    x = rec.explain(user, item)
    assert x["model"] == "ktup"
    assert {p["relation"] for p in x["preferences"]} == set(rec.dataset.relations.tokens)
    assert sum(p["weight"] for p in x["preferences"]) == pytest.approx(1.0)
    assert x["evidence"]["relation"] == x["named"]["relation"]
    assert x["evidence"]["item_entity"] is not None
    # every listed history item really reaches the listed entity through the top relation
    d = rec.dataset
    kg = d.kg_all
    r = d.relations.index(x["named"]["relation"])
    for ent in x["evidence"]["entities"]:
        e = d.entities.index(ent["entity"])
        for h in ent["history_items"]:
            he = d.item_entity[d.items.index(h["item"])]
            assert (((kg[:, 0] == he) & (kg[:, 1] == r) & (kg[:, 2] == e)) |
                    ((kg[:, 2] == he) & (kg[:, 1] == r) & (kg[:, 0] == e))).any()


def test_cli_on_real_run(ktup_run, capsys):
    rec = Recommender.load(ktup_run)
    user = rec.dataset.users.tokens[3]
    assert main(["recommend", str(ktup_run), "--user", user, "-k", "4", "--json", "--explain"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["item"] for r in data["items"]] == [r["item"] for r in rec.recommend(user, k=4)]
    assert main(["recommend", str(ktup_run), "--all-users", "-k", "3", "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == rec.dataset.n_users and json.loads(lines[3])["user"] == user
    assert main(["explain", str(ktup_run), "--user", user, "--item", data["items"][0]["item"]]) == 0
    assert "Reason: \"rel" in capsys.readouterr().out
    assert main(["recommend", str(ktup_run / "nope"), "--user", user]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_quickstart_on_synthetic(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--dataset", "synthetic-tiny", "--epochs", "1", "--out", str(out),
                 "--set", "embedding_size=8"]) == 0
    text = capsys.readouterr().out
    assert "protocol recbole" in text and "Top-10 for user" in text and "Why the first one" in text
    from ktup.cli.quickstart import QUICK_LR
    from ktup.runs import read_config
    cfg = read_config(out)                                       # the short run's own lr; all else shipped
    shipped = Config()
    assert cfg.train.lr == QUICK_LR != shipped.train.lr
    assert (cfg.model.induction, cfg.model.inference, cfg.model.margin) == \
        (shipped.model.induction, shipped.model.inference, shipped.model.margin)
    assert main(["quickstart", "--out", str(out)]) == 0          # a finished run is reused
    assert "Reusing the finished run" in capsys.readouterr().out


def test_run_saved_before_inference_existed_keeps_its_argmax_scores(ktup_run, tmp_path):
    """A run whose config.yaml predates model.inference was trained and evaluated with argmax
    scoring: loading it must reproduce that, not switch to today's default (expected)."""
    import shutil

    from ktup.runs import load_run

    new = load_run(ktup_run)
    assert new.config.model.inference == "expected" and new.model.scoring == "expected"
    old_dir = tmp_path / "old"
    shutil.copytree(ktup_run, old_dir)
    cfg = old_dir / "config.yaml"
    lines = cfg.read_text().splitlines()
    cfg.write_text("\n".join(x for x in lines if not x.strip().startswith("inference:")) + "\n")
    old = load_run(old_dir)
    assert old.config.model.inference == "induced" and old.model.scoring == "hard"
    users, items = torch.arange(5), torch.arange(5)
    with torch.no_grad():
        k = old.model.preference_logits(users, items).argmax(1, keepdim=True)
        per_k = old.model.score_pairs_per_preference(users, items)
        torch.testing.assert_close(old.model.score_pairs(users, items), per_k.gather(1, k)[:, 0])
    # a user's own config file without the key gets today's default
    assert Config.from_dict({"model": {"model": "ktup"}}).model.inference == "expected"
    assert Config.from_dict({"model": {"model": "ktup"}}, saved=True).model.inference == "induced"
