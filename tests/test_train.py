"""Training: every model learns, run directories are complete, runs are reproducible,
schedules do what they say, failures are clear."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.errors import ConfigError, RunError
from ktup.training import NonFiniteLoss, load_run, train
from ktup.runs.checkpoint import load_checkpoint
from ktup.training.schedule import KG, REC, SUM, epoch_plan, step_pattern
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("model", ["ktup", "tup", "bpr", "transh", "transe"])
def test_each_model_trains_and_its_loss_goes_down(tmp_path, model):
    run = train(tiny_config(model, epochs=6, lr=0.05, patience=0), dataset=tiny_dataset(), out=str(tmp_path / "r"),
                progress="quiet")
    recs = [r for r in _lines(run.path / "metrics.jsonl") if not r.get("final")]
    assert len(recs) == 6
    for key, uses in (("rec_loss", run.model.uses_rec), ("kg_loss", run.model.uses_kg)):
        if uses:
            assert recs[-1][key] < recs[0][key], (key, [r[key] for r in recs])
        else:
            assert recs[0][key] is None
    if run.model.uses_rec:
        assert set(run.final["test"]) >= {"recall@10", "ndcg@10"}
    if run.model.uses_kg:
        assert "mrr" in run.final["kg_test"]


def test_run_directory_is_complete_and_loads_back(tmp_path):
    ds = tiny_dataset()
    run = train(tiny_config("ktup"), dataset=ds, out=str(tmp_path / "r"), progress="quiet")
    p = run.path
    for name in ("config.yaml", "run.json", "split.npz", "metrics.jsonl", "final.json", "train.log",
                 "checkpoints/last.pt", "checkpoints/best.pt", "plots/loss.png", "plots/valid.png"):
        assert (p / name).is_file(), name
    info = json.loads((p / "run.json").read_text())
    assert info["status"] == "finished" and info["model"] == "ktup" and info["dataset"] == "tiny"
    assert info["split_hash"] and info["ktup_version"] and info["run_id"]
    assert Config.from_yaml(p / "config.yaml").to_dict() == run.config.to_dict()
    lines = _lines(p / "metrics.jsonl")
    assert [r["epoch"] for r in lines[:-1]] == [1, 2, 3] and lines[-1]["final"]
    assert {"epoch", "step", "rec_loss", "kg_loss", "valid", "seconds"} <= set(lines[0])
    assert lines[-1]["test"] == json.loads((p / "final.json").read_text())["test"]
    # load_run: same split, same model scores, eval mode
    loaded = load_run(p)
    assert not loaded.model.training
    np.testing.assert_array_equal(loaded.dataset.test.users, ds.test.users)
    np.testing.assert_array_equal(loaded.dataset.kg_valid, ds.kg_valid)
    assert loaded.dataset.items.tokens == ds.items.tokens
    users = torch.arange(5)
    with torch.no_grad():
        assert torch.equal(loaded.model.score_all_items(users), run.model.score_all_items(users))
    assert loaded.final["test"] == run.final["test"]


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    a = train(tiny_config("ktup", seed=3), dataset=tiny_dataset(), out=str(tmp_path / "a"), progress="quiet")
    b = train(tiny_config("ktup", seed=3), dataset=tiny_dataset(), out=str(tmp_path / "b"), progress="quiet")
    c = train(tiny_config("ktup", seed=4), dataset=tiny_dataset(), out=str(tmp_path / "c"), progress="quiet")
    strip = lambda rs: [{k: v for k, v in r.items() if "seconds" not in k and k not in ("run_id", "run_dir")} for r in rs]  # noqa: E731
    assert strip(_lines(a.path / "metrics.jsonl")) == strip(_lines(b.path / "metrics.jsonl"))
    sa, sb = load_checkpoint(a.path / "checkpoints/last.pt"), load_checkpoint(b.path / "checkpoints/last.pt")
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert strip(_lines(c.path / "metrics.jsonl")) != strip(_lines(a.path / "metrics.jsonl"))


def test_corrupted_or_truncated_checkpoint_is_reported(tmp_path):
    run = train(tiny_config("bpr", epochs=1), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    best = run.path / "checkpoints" / "best.pt"
    raw = bytearray(best.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    best.write_bytes(bytes(raw))
    with pytest.raises(RunError, match="corrupt"):
        load_run(run.path)
    best.write_bytes(bytes(raw[:100]))
    with pytest.raises(RunError, match="corrupt|truncated"):
        load_run(run.path)


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="not writable"):
        train(tiny_config("bpr"), dataset=tiny_dataset(), out=str(blocker / "run"), progress="quiet")
    # checked before the data is even read
    cfg = tiny_config("bpr")
    cfg.data.dataset = str(tmp_path / "no-such-dataset")
    with pytest.raises(RunError, match="not writable"):
        train(cfg, out=str(blocker / "run"), progress="quiet")


def test_existing_run_is_not_overwritten(tmp_path):
    train(tiny_config("bpr", epochs=1), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    with pytest.raises(RunError, match="already holds a run"):
        train(tiny_config("bpr", epochs=1), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")


def test_missing_run_directory_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a ktup run directory"):
        load_run(tmp_path / "empty")


# ---------------------------------------------------------------- schedules
def test_step_pattern_is_seven_rec_to_three_kg_in_every_window():
    kinds = step_pattern(70, 0.7)
    assert (kinds == REC).sum() == 70 and (kinds == KG).sum() == 30
    windows = kinds[:100].reshape(10, 10)
    assert ((windows == REC).sum(1) == 7).all()
    assert list(kinds[:10]) == [REC, REC, REC, KG, REC, REC, KG, REC, REC, KG]
    assert ((step_pattern(20, 0.5) == REC).sum(), (step_pattern(20, 0.5) == KG).sum()) == (20, 20)


def test_epoch_alternation_and_sum_plans():
    cfg = tiny_config("ktup", schedule="epoch", rec_epochs=2, kg_epochs=1).train
    plans = [epoch_plan(e, 5, 3, True, True, cfg) for e in range(6)]
    assert [set(p.tolist()) for p in plans] == [{REC}, {REC}, {KG}] * 2
    assert [len(p) for p in plans[:3]] == [5, 5, 3]
    cfg = tiny_config("ktup", schedule="sum").train
    assert epoch_plan(0, 5, 3, True, True, cfg).tolist() == [SUM] * 5
    # rec-only and KG-only models ignore the schedule
    assert set(epoch_plan(0, 5, 3, True, False, cfg).tolist()) == {REC}
    assert epoch_plan(0, 5, 3, False, True, cfg).tolist() == [KG] * 3


@pytest.mark.parametrize("schedule,check", [
    ("step", lambda r: r["rec_steps"] > 0 and abs(r["kg_steps"] - round(r["rec_steps"] * 3 / 7)) == 0),
    ("sum", lambda r: r["rec_steps"] == r["kg_steps"] > 0),
])
def test_schedules_in_training(tmp_path, schedule, check):
    run = train(tiny_config("ktup", schedule=schedule, epochs=2, joint_lambda=0.7), dataset=tiny_dataset(), out=str(tmp_path / "r"),
                progress="quiet")
    for r in _lines(run.path / "metrics.jsonl")[:-1]:
        assert check(r), r


def test_epoch_schedule_in_training(tmp_path):
    run = train(tiny_config("ktup", schedule="epoch", rec_epochs=2, kg_epochs=1, epochs=3), dataset=tiny_dataset(),
                out=str(tmp_path / "r"), progress="quiet")
    recs = _lines(run.path / "metrics.jsonl")[:-1]
    assert [(r["rec_steps"] > 0, r["kg_steps"] > 0) for r in recs] == [(True, False), (True, False), (False, True)]


# ---------------------------------------------------------------- failures and options
def test_non_finite_loss_stops_with_a_clear_message_and_keeps_good_weights(tmp_path, monkeypatch):
    from ktup.models.bpr import BPRMF

    real, calls = BPRMF.rec_loss, {"n": 0}

    def flaky(self, u, p, n):
        calls["n"] += 1
        loss = real(self, u, p, n)
        return loss * float("nan") if calls["n"] == 8 else loss

    monkeypatch.setattr(BPRMF, "rec_loss", flaky)
    out = tmp_path / "r"
    with pytest.raises(NonFiniteLoss, match=r"non-finite recommendation loss at epoch 2, step 8.*last good checkpoint"):
        train(tiny_config("bpr", epochs=3), dataset=tiny_dataset(), out=str(out), progress="quiet")
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_sparse_adam_trains(tmp_path):
    """``optimizer=sparse_adam`` (row-wise lazy Adam, see tests/test_sparse.py) trains like adam."""
    run = train(tiny_config("bpr", optimizer="sparse_adam"), dataset=tiny_dataset(), out=str(tmp_path / "r"),
                progress="quiet")
    assert run.info["status"] == "finished"


@pytest.mark.parametrize("opt", ["adagrad", "sgd"])
def test_other_optimisers_train(tmp_path, opt):
    run = train(tiny_config("bpr", optimizer=opt, epochs=1, grad_clip=1.0, weight_decay=1e-4),
                dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    assert run.info["status"] == "finished"


def test_early_stopping_and_best_checkpoint(tmp_path):
    run = train(tiny_config("bpr", epochs=30, lr=0.2, patience=2), dataset=tiny_dataset(), out=str(tmp_path / "r"),
                progress="quiet")
    recs = _lines(run.path / "metrics.jsonl")[:-1]
    if run.final["stopped_early"]:
        assert len(recs) < 30 and len(recs) - run.final["best_epoch"] == 2
    best = max(recs, key=lambda r: r["valid"]["ndcg@10"])
    assert run.final["best_epoch"] == best["epoch"]
    assert load_checkpoint(run.path / "checkpoints/best.pt")["epoch"] == best["epoch"]


def test_init_from_tup_and_transh_runs(tmp_path):
    ds = tiny_dataset()
    tup = train(tiny_config("tup", epochs=1), dataset=ds, out=str(tmp_path / "tup"), progress="quiet")
    transh = train(tiny_config("transh", epochs=1), dataset=ds, out=str(tmp_path / "transh"), progress="quiet")
    run = train(tiny_config("ktup", epochs=0, init_from=[str(tup.path), str(transh.path)]), dataset=ds,
                out=str(tmp_path / "k"), progress="quiet")
    sd, tsd, hsd = run.model.state_dict(), tup.model.state_dict(), transh.model.state_dict()
    shared_tup = [k for k in tsd if k.startswith("user")]
    assert shared_tup and all(torch.equal(sd[k], tsd[k]) for k in shared_tup)
    assert torch.equal(sd["relation.weight"], hsd["relation.weight"])


def test_jsonl_progress_prints_one_object_per_epoch(tmp_path, capsys):
    train(tiny_config("bpr", epochs=2), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="jsonl")
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o.get("epoch") for o in out[:2]] == [1, 2] and out[-1]["final"]


@pytest.mark.integration
def test_ktup_trains_on_ml100k_recbole_split(tmp_path):
    from conftest import SKIP_NO_DATA, shared_datasets_dir

    root = shared_datasets_dir()
    split = (root or Path("/nonexistent")) / "ml-100k-recbole-split"
    if not split.is_dir():
        pytest.skip(SKIP_NO_DATA)
    cfg = Config.from_dict({"data": {"dataset": str(split), "split": "given"},
                            "train": {"epochs": 1, "eval_every": 1}, "eval": {"kg_eval_max_triples": 500}})
    run = train(cfg, out=str(tmp_path / "r"), progress="quiet")
    assert len(run.dataset.train) == 78836 and run.info["status"] == "finished"
    assert 0.0 < run.final["test"]["ndcg@10"] < 1.0
    loaded = load_run(run.path)
    assert len(loaded.dataset.valid) == 9359


def test_cli_flags_build_the_config(tmp_path):
    from ktup.cli import build_parser
    from ktup.cli.train import build_config

    args = build_parser().parse_args(["train", "--model", "tup", "--dataset", "synthetic-tiny", "--seed", "9",
                                      "--set", "epochs=20", "--set", "lr=0.002", "--init-from", "a", "b", "--quiet"])
    cfg = build_config(args)
    assert (cfg.model.model, cfg.data.dataset, cfg.train.seed, cfg.train.epochs, cfg.train.lr) == \
        ("tup", "synthetic-tiny", 9, 20, 0.002)
    assert cfg.train.init_from == ("a", "b") and args.quiet
    with pytest.raises(ConfigError, match="epoch"):
        build_config(build_parser().parse_args(["train", "--set", "epoch=3"]))


def test_cli_trains_a_registry_dataset_and_prints_the_protocol(tmp_path, capsys):
    from ktup.cli import main

    out = tmp_path / "r"
    assert main(["train", "--dataset", "synthetic-tiny", "--model", "bpr", "--out", str(out), "--quiet",
                 "--set", "epochs=2", "--set", "embedding_size=8"]) == 0
    text = capsys.readouterr().out
    assert "test metrics, protocol recbole" in text and "ndcg@10" in text and f"run directory: {out}" in text
    assert load_run(out).dataset.name == "synthetic-tiny"
    # the run reloads its data from the source: different data is refused, not silently used
    cfg_file = out / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("dataset: synthetic-tiny", "dataset: synthetic-small"))
    with pytest.raises(RunError, match="no longer match"):
        load_run(out)
