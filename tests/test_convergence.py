"""Shipped defaults train to convergence: runs stop by the patience rule on valid, and the
epoch count is only a safety cap; a run that reaches the cap says it may not have converged."""

from __future__ import annotations

import json

import pytest

from ktup.config import Config
from ktup.training import train
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def test_shipped_defaults_are_a_convergence_rule_not_a_fixed_budget():
    t = Config().train
    assert t.patience > 0 and t.valid_metric == "ndcg@10" and t.eval_every == 1
    assert t.epochs >= 1000          # a cap far beyond where runs converge (ml-100k: best epochs 72-84)


def test_a_default_run_stops_by_the_convergence_rule(tmp_path):
    cfg = Config()                               # every training default as shipped
    cfg.model.embedding_size = 16                # keep the test fast; the stopping rule is what is tested
    cfg.eval.kg_eval = False
    run = train(cfg, dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    f = run.final
    assert f["stop_reason"] == "patience" and f["converged"] is True and f["stopped_early"] is True
    assert f["epochs"] < cfg.train.epochs
    assert f["epochs"] - f["best_epoch"] == cfg.train.patience
    assert json.loads((run.path / "final.json").read_text())["converged"] is True


def test_a_run_that_hits_the_cap_says_it_may_not_have_converged(tmp_path):
    run = train(tiny_config("bpr", epochs=2, patience=20), dataset=tiny_dataset(), out=str(tmp_path / "r"),
                progress="quiet")
    assert run.final["stop_reason"] == "epoch cap" and run.final["converged"] is False
    assert "may not have converged" in (run.path / "train.log").read_text()
