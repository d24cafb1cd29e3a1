"""What a new user meets in the first hour (issue 18): thread choice, fast default evaluation
with progress, typos reported before torch loads, RecBole's names and config files, the
fetchable RecBole split, and the small things (runs listing, export permissions, split header)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ktup.cli import main
from ktup.config import Config
from ktup.errors import ConfigError

SRC = str(Path(__file__).resolve().parents[1] / "src")


# ------------------------------------------------------------------ 1. threads
def test_thread_choice_explicit_wins_and_small_or_busy_means_one():
    from ktup.training.threads import MIN_WORK_FOR_THREADS, choose_threads, step_work

    assert choose_threads(3, 10, torch_default=8) == (3, "train.threads")
    n, why = choose_threads(0, MIN_WORK_FOR_THREADS - 1, torch_default=8, free=8)
    assert n == 1 and "small" in why
    n, why = choose_threads(0, MIN_WORK_FOR_THREADS, torch_default=8, free=1)
    assert n == 1 and "busy" in why
    assert choose_threads(0, MIN_WORK_FOR_THREADS, torch_default=8, free=3)[0] == 3
    assert choose_threads(0, MIN_WORK_FOR_THREADS, torch_default=2, free=16)[0] == 2
    cfg = Config()   # the shipped ml-100k defaults are a small model: one thread
    assert step_work(cfg.train, cfg.model) < MIN_WORK_FOR_THREADS


def test_run_header_says_threads(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--dataset", "synthetic-tiny", "--set", "epochs=1", "--set", "embedding_size=8",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    # "a small model ..." (or "one core" when torch was already held to one thread in this process)
    assert "threads: 1 (auto: " in err and "; set train.threads=N to choose)" in err
    assert json.loads((out / "run.json").read_text())["threads"] == 1
    assert "threads: 1" in (out / "train.log").read_text()


# ------------------------------------------------------------------ 2. KG evaluation: sampled by default, said
def test_default_kg_evaluation_is_a_stated_seeded_sample(tiny_dataset):
    from ktup.evaluation import evaluate_link_prediction
    from ktup.models import build_model

    assert Config().eval.kg_eval_max_triples == 1000
    model = build_model(Config().model, tiny_dataset)
    n = len(tiny_dataset.kg_test)
    a = evaluate_link_prediction(model, tiny_dataset, "test", max_triples=n - 1)
    b = evaluate_link_prediction(model, tiny_dataset, "test", max_triples=n - 1)
    assert a.n_triples == n - 1 and a.sample_seed == 0 and np.array_equal(a.triples, b.triples)
    assert f"of {n} (a seeded random sample, seed 0)" in a.format_table()
    full = evaluate_link_prediction(model, tiny_dataset, "test", max_triples=0)
    assert full.sample_seed is None and "(all)" in full.format_table()


def test_evaluate_cli_says_sample_or_all(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--dataset", "synthetic-tiny", "--set", "epochs=1", "--set", "embedding_size=8",
                 "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--kg-max-triples", "2"]) == 0
    cap = capsys.readouterr()
    assert "KG link prediction on a seeded sample of 2 of" in cap.err and "--kg-all for all" in cap.err
    assert "a seeded random sample, seed 0" in cap.out
    assert main(["evaluate", str(out), "--kg-all", "--json"]) == 0
    kg = json.loads(capsys.readouterr().out)["kg"]
    assert kg["triples"] == kg["triples_available"] and kg["sample_seed"] is None


# ------------------------------------------------------------------ 3. fail fast, before torch
def _imported_modules(args: list[str]) -> tuple[int, str, set[str]]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ktup", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    mods = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    errors = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    return proc.returncode, errors, mods


@pytest.mark.parametrize("args, says", [
    (["train", "--model", "nosuch"], "model.model: must be one of"),
    (["train", "--set", "learnin_rate=0.1"], "did you mean 'learning_rate'"),
    (["quickstart", "--set", "nosuch=1"], "unknown config key 'nosuch'"),
])
def test_typos_fail_before_torch_is_imported(args, says):
    rc, errors, mods = _imported_modules(args)
    assert rc == 2 and says in errors and errors.count("\n") == 0
    assert "ktup.cli" in mods and "torch" not in mods


def test_model_names_known_without_torch_match_the_registry():
    from ktup.config import MODEL_NAMES
    from ktup.models import MODELS

    assert set(MODEL_NAMES) == set(MODELS)


# ------------------------------------------------------------------ 4. RecBole users
def test_recbole_names_are_aliases_with_a_note(capsys, monkeypatch):
    import ktup.config

    monkeypatch.setattr(ktup.config, "_noted", set())   # the note is said once per process
    cfg = Config().apply_overrides(["learning_rate=0.01", "train_batch_size=1024", "stopping_step=5",
                                    "eval_batch_size=256", "topk=[10, 20]", "learner=adagrad", "eval_step=2"])
    t = cfg.train
    assert (t.lr, t.batch_size, t.patience, t.optimizer, t.eval_every) == (0.01, 1024, 5, "adagrad", 2)
    assert cfg.eval.user_batch_size == 256 and cfg.eval.ks == (10, 20)
    err = capsys.readouterr().err
    assert "train_batch_size is RecBole's name for train.batch_size" in err
    assert "learning_rate is RecBole's name for train.lr" in err
    with pytest.raises(ConfigError, match="did you mean 'train_batch_size'"):
        Config().apply_overrides(["train_bach_size=3"])


def test_train_batch_size_never_suggests_user_batch_size(tmp_path, capsys):
    assert main(["train", "--set", "train_batch_size=0", "--dataset", "synthetic-tiny", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "user_batch_size" not in err and "train.batch_size: must be > 0" in err


RECBOLE_YAML = """\
model: KTUP
dataset: ml-100k
learning_rate: 0.01
train_batch_size: 1024
eval_batch_size: 4096
stopping_step: 5
epochs: 3
valid_metric: MRR@10
topk: [10, 20]
seed: 7
weight_decay: 0.0
embedding_size: 32
L1_flag: false
metrics: ["Recall", "NDCG"]
eval_args: {split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user, mode: full}
train_neg_sample_args: {distribution: uniform, sample_num: 1}
gpu_id: '0'
USER_ID_FIELD: user_id
"""


def test_recbole_yaml_maps_shared_keys_and_lists_the_rest(tmp_path, capsys):
    from ktup.recbole_config import load_config_file

    p = tmp_path / "recbole.yaml"
    p.write_text(RECBOLE_YAML)
    cfg = load_config_file(p)
    assert cfg.model.model == "ktup" and cfg.model.embedding_size == 32 and cfg.model.norm == "l2"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.patience, cfg.train.epochs, cfg.train.seed) == (0.01, 1024, 5, 3, 7)
    assert cfg.train.valid_metric == "mrr@10" and cfg.train.num_negatives == 1 and cfg.train.weight_decay == 0.0
    assert cfg.eval.ks == (10, 20) and cfg.data.split == "random" and cfg.data.split_ratios == (0.8, 0.1, 0.1)
    err = capsys.readouterr().err
    assert "read as a RecBole config" in err
    assert "ignored (no ktup equivalent): metrics, gpu_id, USER_ID_FIELD" in err


def test_ktup_yaml_stays_strict(tmp_path):
    from ktup.recbole_config import load_config_file

    p = tmp_path / "ours.yaml"
    p.write_text("train: {lr: 0.01}\nepochz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'epochz'"):
        load_config_file(p)
    p.write_text("train: {lr: 0.01, epochz: 3}\nlearning_rate: 0.02\n")   # mixed: our sections stay strict
    with pytest.raises(ConfigError, match="unknown config key 'train.epochz'"):
        load_config_file(p)
    p.write_text("train: {epochs: 4}\nlearning_rate: 0.02\n")
    cfg = load_config_file(p)
    assert cfg.train.epochs == 4 and cfg.train.lr == 0.02


def test_train_reads_a_recbole_config(tmp_path, capsys):
    p = tmp_path / "recbole.yaml"
    p.write_text("dataset: synthetic-tiny\nlearning_rate: 0.005\nepochs: 1\nembedding_size: 8\nmetrics: [Recall]\n")
    out = tmp_path / "r"
    assert main(["train", "--config", str(p), "--quiet", "--out", str(out)]) == 0
    from ktup.runs import read_config

    cfg = read_config(out)
    assert cfg.train.lr == 0.005 and cfg.model.embedding_size == 8
    assert "ignored (no ktup equivalent): metrics" in capsys.readouterr().err


# ------------------------------------------------------------------ 5. RecBole's split, rebuilt
def _split_reference(sizes: np.ndarray) -> np.ndarray:
    """RecBole's per-user rounding written plainly, one user at a time (the test's reference)."""
    out = []
    for tot in sizes.tolist():
        r = [0.8, 0.1, 0.1]
        cnt = [int(x * tot) for x in r]
        cnt[0] = tot - sum(cnt[1:])
        for i in range(1, 3):
            if cnt[0] <= 1:
                break
            if 0 < r[-i] * tot < 1:
                cnt[-i] += 1
                cnt[0] -= 1
        out.append(cnt)
    return np.array(out)


def test_part_sizes_follow_recboles_rounding():
    from ktup.data.recbole_split import part_sizes

    n = np.arange(1, 400)
    assert np.array_equal(part_sizes(n), _split_reference(n))


@pytest.mark.integration
def test_recbole_split_rebuilt_row_for_row(shared_datasets, tmp_path):
    from ktup.data.recbole_split import build

    if not (shared_datasets / "ml-100k-recbole-split").is_dir():
        pytest.skip("no reference copy of ml-100k-recbole-split to compare with")
    out = build(shared_datasets / "ml-100k", tmp_path / "ml-100k-recbole-split")
    for part in ("train", "valid", "test"):
        mine = (out / f"ml-100k.{part}.inter").read_bytes()
        ref = (shared_datasets / "ml-100k-recbole-split" / f"ml-100k.{part}.inter").read_bytes()
        assert mine == ref, part
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (shared_datasets / "ml-100k-recbole-split").iterdir())


@pytest.mark.integration
def test_registry_builds_the_split_from_a_cached_ml100k(shared_datasets, tmp_path, monkeypatch, capsys):
    from ktup.data import registry

    cache = tmp_path / "cache"
    shutil.copytree(shared_datasets / "ml-100k", cache / "datasets" / "ml-100k")
    monkeypatch.setenv("KTUP_CACHE_DIR", str(cache))
    monkeypatch.setattr(registry, "shared_root", lambda: None)
    assert main(["datasets", "list"]) == 0
    assert "fetchable (built from ml-100k)" in capsys.readouterr().out
    res = registry.resolve("ml-100k-recbole-split")
    assert res.path == cache / "datasets" / "ml-100k-recbole-split" and (res.path / "ml-100k.train.inter").exists()
    assert "building ml-100k-recbole-split" in capsys.readouterr().err


# ------------------------------------------------------------------ 7. small things
def test_runs_lists_runs_and_evaluate_of_a_folder_names_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    for model in ("bpr", "tup"):
        assert main(["train", "--dataset", "synthetic-tiny", "--model", model, "--set", "epochs=1",
                     "--set", "embedding_size=8", "--quiet", "--out", str(runs / model)]) == 0
    capsys.readouterr()
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "model" in out and "best valid" in out
    for model in ("bpr", "tup"):
        line = next(l for l in out.splitlines() if l.startswith(str(runs / model)))
        assert model in line and "synthetic-tiny" in line and "finished" in line and "ndcg@10 0." in line
    assert main(["runs", str(runs), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"bpr", "tup"} and all(r["status"] == "finished" for r in rows)
    assert main(["evaluate", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "is a folder of 2 runs, not a run" in err and str(runs / "bpr") in err


def test_export_folder_has_normal_permissions(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--dataset", "synthetic-tiny", "--model", "bpr", "--set", "epochs=1",
                 "--set", "embedding_size=8", "--quiet", "--out", str(out)]) == 0
    mask = os.umask(0o022)
    try:
        assert main(["export", str(out), "--to", str(tmp_path / "exp")]) == 0
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "exp").stat().st_mode) == 0o755


def test_protocol_header_names_the_split_used():
    from ktup.evaluation.protocols import RECBOLE, describe_split

    given = describe_split({"method": "given"})
    p = RECBOLE.parameters(split_used=given)
    assert "random 8:1:1" not in p["description"] and "own train/valid/test files (given)" in p["description"]
    assert describe_split({"method": "random", "ratios": [0.8, 0.1, 0.1], "seed": 2020}) == \
        "random 8:1:1 split per user (seed 2020)"
    assert describe_split({"method": "temporal", "ratios": [0.6, 0.2, 0.2]}) == \
        "temporal 3:1:1 split per user (earliest first)"


def test_header_of_a_pre_split_dataset_says_given(tmp_path, tiny_dataset):
    from ktup.evaluation import evaluate_recommendation

    tiny_dataset.meta = dict(tiny_dataset.meta or {}, split={"method": "given"})
    res = evaluate_recommendation(lambda u, i=None: __import__("torch").zeros(len(u), tiny_dataset.n_items),
                                  tiny_dataset, "test")
    assert "split: the data set's own train/valid/test files (given)" in res.format_table()


def test_gitignore_keeps_exports_out():
    text = (Path(__file__).resolve().parents[1] / ".gitignore").read_text()
    assert "exports/" in text.split()


@pytest.mark.integration
def test_integration_tests_use_a_fetched_ml100k_when_no_shared_folder(shared_datasets, tmp_path, monkeypatch):
    from conftest import shared_datasets_dir

    cache = tmp_path / "cache"
    shutil.copytree(shared_datasets / "ml-100k", cache / "datasets" / "ml-100k")
    monkeypatch.setenv("KTUP_SHARED_DATASETS", str(tmp_path / "absent"))
    monkeypatch.setenv("KTUP_CACHE_DIR", str(cache))
    found = shared_datasets_dir()
    assert found == cache / "datasets"
    assert (found / "ml-100k-recbole-split" / "ml-100k.train.inter").exists()   # built from the fetched copy
    monkeypatch.setenv("KTUP_CACHE_DIR", str(tmp_path / "empty"))
    assert shared_datasets_dir() is None
