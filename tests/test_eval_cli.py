"""`ktup evaluate`: table and JSON output, KG block for KG models, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from ktup.cli import main
from ktup.config import Config

from test_eval_link_prediction import TableKG, _random_kg
from test_eval_ranking import MatrixScorer, _random_case


class FakeRun:
    def __init__(self, model, dataset, path="RUN"):
        self.model, self.dataset, self.path = model, dataset, path
        self.config = Config()
        self.info = {"model": "fake"}


class RecAndKG(torch.nn.Module):
    uses_rec = True
    uses_kg = True

    def __init__(self, rec, kg):
        super().__init__()
        self.rec, self.kg = rec, kg

    def score_all_items(self, users, items=None):
        return self.rec.score_all_items(users, items)

    def score_tails(self, h, r, entities=None):
        return self.kg.score_tails(h, r, entities)

    def score_heads(self, r, t, entities=None):
        return self.kg.score_heads(r, t, entities)


@pytest.fixture
def fake_run(monkeypatch):
    ds, scores = _random_case(11, n_users=10, n_items=25)
    kg_ds, table = _random_kg(3)
    ds.entities, ds.relations = kg_ds.entities, kg_ds.relations
    ds.kg_train, ds.kg_valid, ds.kg_test = kg_ds.kg_train, kg_ds.kg_valid, kg_ds.kg_test
    model = RecAndKG(MatrixScorer(scores), TableKG(table))
    calls = {}

    def fake_load_run(run_dir, checkpoint="best", device="cpu"):
        calls["args"] = (run_dir, checkpoint)
        return FakeRun(model, ds, path=run_dir)

    import ktup.runs as runs
    monkeypatch.setattr(runs, "load_run", fake_load_run)
    return calls


def test_json_output_has_the_documented_keys(fake_run, capsys):
    assert main(["evaluate", "somerun", "--split", "valid", "--k", "10,20", "--json", "--checkpoint", "last"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert fake_run["args"] == ("somerun", "last")
    assert out["protocol"]["name"] == "recbole" and out["split"] == "valid" and out["users"] > 0
    assert {"recall@10", "ndcg@20", "mrr@10", "hit@10", "precision@10", "map@20", "f1@10"} <= set(out["metrics"])
    assert {"mr", "mrr", "hits@1", "hits@3", "hits@10"} <= set(out["kg"])


def test_table_output_and_no_kg(fake_run, capsys):
    assert main(["evaluate", "somerun", "--protocol", "paper", "--no-kg"]) == 0
    text = capsys.readouterr().out
    assert "protocol: paper" in text and "split: test" in text and "link prediction" not in text
    assert "data.k_core" in text   # the run's data differs from the paper protocol: said out loud


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ktup: error:") and "\n" not in err
    assert main(["evaluate", str(tmp_path), "--k", "ten"]) == 2
    assert "--k" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--protocol", "nope"]) == 2
    assert "protocol" in capsys.readouterr().err


def test_evaluates_a_real_trained_run(tmp_path, tiny_dataset, capsys):
    training = pytest.importorskip("ktup.training")
    cfg = Config.from_dict({"model": {"model": "ktup", "embedding_size": 8}, "train": {"epochs": 1}})
    training.train(cfg, dataset=tiny_dataset, out=tmp_path / "run", progress="quiet")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--k", "5,10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "test" and out["users"] > 0 and "ndcg@5" in out["metrics"]
    assert 0.0 <= out["metrics"]["recall@10"] <= 1.0
    assert out["kg"]["mr"] >= 1.0
    # the same numbers twice (deterministic inference)
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--k", "5,10"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == out["metrics"]
