"""Issue 17 item 9: edge cases of runs and figures that used to end in an unloadable run, bare
NaN in JSON, a message cut before its content, or a negative sparsity. (The config cases —
NaN, ±inf, margin <= 0 — are in the corpus: tests/reliability/corpus.py, run by
test_reliability_inputs.py.)"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ktup.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability.corpus import VALID, write_files  # noqa: E402

TINY = ["--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64", "--set", "threads=1",
        "--set", "patience=0", "--set", "kg_eval_max_triples=20"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _strict_json(text: str):
    def no_constant(name):
        raise AssertionError(f"not JSON: bare {name}")
    return json.loads(text, parse_constant=no_constant)


# ------------------------------------------------------------------ epochs=0
def test_epochs_0_leaves_a_run_every_command_loads_and_resume_equals_a_direct_run(tmp_path, capsys):
    zero, direct = tmp_path / "zero", tmp_path / "direct"
    assert cli(capsys, "train", "--dataset", "synthetic-tiny", "--out", str(zero), "--quiet", "--set", "epochs=0", *TINY)[0] == 0
    for ck in ("best", "last"):
        assert (zero / "checkpoints" / f"{ck}.pt").exists()
    rc, out, err = cli(capsys, "evaluate", str(zero), "--json", "--no-kg")
    assert rc == 0, err
    assert _strict_json(out)["users"] > 0
    rc, out, err = cli(capsys, "recommend", str(zero), "--user", "u0", "-k", "3")
    assert rc == 0 and "u0" in out, err
    from ktup.explain import Recommender

    assert len(Recommender.load(zero).recommend("u0", k=3)) == 3
    # extending it trains from epoch 0 to the same numbers as a run that never stopped
    assert cli(capsys, "train", "--resume", str(zero), "--quiet", "--set", "epochs=2")[0] == 0
    assert cli(capsys, "train", "--dataset", "synthetic-tiny", "--out", str(direct), "--quiet", "--set", "epochs=2", *TINY)[0] == 0
    a, b = (json.loads((p / "final.json").read_text()) for p in (zero, direct))
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]


# ------------------------------------------------------------------ an empty test split
@pytest.fixture(scope="module")
def run_without_test(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("notest")
    d = write_files(tmp / "toy", VALID["recbole"]())
    out = tmp / "run"
    rc = main(["train", "--dataset", str(d), "--out", str(out), "--quiet", "--set", "epochs=1",
               "--set", "split_ratios=[0.8,0.2,0]", "--set", "drop_unlinked=false", *TINY])
    assert rc == 0
    return out


def test_empty_test_split_gives_null_and_a_reason_in_json(run_without_test, capsys):
    rc, out, err = cli(capsys, "evaluate", str(run_without_test), "--json", "--no-kg")
    assert rc == 0, err
    d = _strict_json(out)                                  # used to hold bare NaN: not JSON
    assert d["users"] == 0 and set(d["metrics"].values()) == {None}
    assert "no user has a held-out item in split 'test'" in d["note"]


def test_empty_test_split_table_says_why(run_without_test, capsys):
    rc, out, _ = cli(capsys, "evaluate", str(run_without_test), "--no-kg")
    assert rc == 0 and "nan" not in out and "n/a: no user has a held-out item in split 'test'" in out


# ------------------------------------------------------------------ weights that do not fit
def test_shape_mismatch_names_the_tensors_and_shapes_on_one_line(tmp_path, capsys):
    out = tmp_path / "r"
    assert cli(capsys, "train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", "--set", "epochs=1", *TINY)[0] == 0
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    cfg = bad / "config.yaml"
    cfg.write_text(cfg.read_text().replace("embedding_size: 8", "embedding_size: 16"))
    for argv in (["evaluate", str(bad)], ["recommend", str(bad), "--user", "u0"], ["train", "--resume", str(bad), "--quiet"]):
        rc, _, err = cli(capsys, *argv)
        lines = [x for x in err.splitlines() if x.strip()]
        assert rc == 2 and len(lines) == 1, err
        assert "user.weight is [40, 8] in the file but [40, 16] in the model" in lines[0], lines[0]
        assert not lines[0].rstrip().endswith("KTUP:)")


def test_describe_load_error_missing_and_unexpected_keys():
    import torch

    from ktup.models.base import describe_load_error

    m = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict({"weight": torch.zeros(2, 2), "bogus": torch.zeros(1)})
    text = describe_load_error(e.value)
    assert text == "missing bias; unexpected bogus", text


# ------------------------------------------------------------------ datasets info with repeated pairs
def test_datasets_info_sparsity_counts_distinct_pairs(tmp_path, capsys):
    files = VALID["recbole"]()
    head, body = files["toy.inter"].split(b"\n", 1)
    files["toy.inter"] = head + b"\n" + body * 3                 # every pair three times (dedup is off in info)
    d = write_files(tmp_path / "toy", files)
    rc, out, err = cli(capsys, "datasets", "info", str(d), "--json")
    assert rc == 0, err
    info = _strict_json(out)
    assert info["interactions"] == 120 and info["distinct_pairs"] == 40
    assert info["sparsity"] == pytest.approx(1 - 40 / 48) and info["sparsity"] >= 0
    rc, out, _ = cli(capsys, "datasets", "info", str(d))
    assert "120 (40 distinct user-item pairs)" in out and "-" not in out.split("sparsity")[1].split("\n")[0]
