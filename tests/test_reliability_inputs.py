"""Reliability, bad input: every malformed dataset, config and command in the corpus ends with
one line naming what and where, a non-zero exit, no traceback and nothing half-written.

The dataset cases come from ``tests/reliability/corpus.py`` (a table shared with
``benchmarks/reliability.py``). A representative subset runs the real CLI in a subprocess; the
rest call ``ktup.cli.main`` in-process and capture stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ktup.cli import main
from ktup.config import DataConfig
from ktup.data import load_dataset
from ktup.errors import KtupError
from reliability.corpus import CASES, VALID, write_files

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
TINY = ["--set", "epochs=1", "--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64",
        "--set", "kg_eval_max_triples=20"]


def one_line_error(err: str) -> str:
    """The error output must be exactly one ``ktup: error:`` line and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("ktup: error: "), err
    return lines[0]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:      # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ktup", *argv], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=120)


# ------------------------------------------------------------------ the dataset corpus
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_dataset_case(case, tmp_path):
    d = write_files(tmp_path / "toy", case.files())
    kw = {"drop_unlinked": False, **case.data}
    if case.expect == "ok":
        ds = load_dataset(DataConfig(dataset=str(d), **kw))
        case.check(ds)
        return
    with pytest.raises(KtupError) as ei:
        load_dataset(DataConfig(dataset=str(d), **kw))
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert case.fragment in msg, (msg, case.fragment)


def test_corpus_is_broad():
    by_fmt = {f: sum(c.fmt == f for c in CASES) for f in VALID}
    assert sum(c.expect == "error" for c in CASES) >= 25, by_fmt
    assert all(n >= 6 for n in by_fmt.values()), by_fmt


SUBPROCESS_CASES = ["rb-non-numeric-rating", "kt-user-not-in-map"]  # the rest go through main() below


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_dataset_through_real_cli_leaves_no_run_dir(case_id, tmp_path):
    """``ktup train`` on a broken dataset: one line naming file and line, exit 2, no run directory."""
    case = next(c for c in CASES if c.id == case_id)
    d = write_files(tmp_path / "toy", case.files())
    out = tmp_path / "runs" / "r1"
    p = run_cli("train", "--dataset", str(d), "--out", str(out), "--set", "drop_unlinked=false", *TINY)
    assert p.returncode == 2, p.stderr
    assert case.fragment in one_line_error(p.stderr)
    assert not out.exists(), list(out.rglob("*"))


@pytest.mark.parametrize("case", [c for c in CASES if c.expect == "error"], ids=lambda c: c.id)
def test_bad_dataset_through_main_info_and_train(case, tmp_path, capsys):
    d = write_files(tmp_path / "toy", case.files())
    sets = ["--set", "drop_unlinked=false", *[f"--set={k}={v}" for k, v in case.data.items()]]
    rc, _, err = run_main(capsys, "datasets", "info", str(d), *sets)
    assert rc == 2
    assert case.fragment in one_line_error(err)
    out = tmp_path / "runs" / "r"
    rc, _, err = run_main(capsys, "train", "--dataset", str(d), "--out", str(out), "--quiet", *sets, *TINY)
    assert rc == 2
    assert case.fragment in one_line_error(err)
    assert not out.exists(), sorted(out.rglob("*"))    # a failed start leaves no half-made run directory


def test_failed_train_into_existing_empty_dir_leaves_it_empty(tmp_path, capsys):
    case = next(c for c in CASES if c.id == "rb-too-few-fields")
    d = write_files(tmp_path / "toy", case.files())
    out = tmp_path / "mine"
    out.mkdir()
    rc, _, err = run_main(capsys, "train", "--dataset", str(d), "--out", str(out), "--quiet", *TINY)
    assert rc == 2 and case.fragment in one_line_error(err)
    assert out.is_dir() and list(out.iterdir()) == []


# ------------------------------------------------------------------ bad configs
YAML_CASES = [
    ("unknown-key", "train:\n  epochz: 3\n", "unknown config key 'train.epochz' (did you mean 'epochs'?)"),
    ("unknown-section", "trainer:\n  epochs: 3\n", "unknown config key 'trainer'"),
    ("wrong-type", "train:\n  epochs: many\n", "train.epochs: expected int, got 'many'"),
    ("bool-for-int", "model:\n  embedding_size: true\n", "model.embedding_size: expected int, got True"),
    ("negative-size", "model:\n  embedding_size: -4\n", "model.embedding_size: must be > 0, got -4"),
    ("zero-batch", "train:\n  batch_size: 0\n", "train.batch_size: must be > 0, got 0"),
    ("lambda-above-1", "train:\n  joint_lambda: 1.5\n", "train.joint_lambda: must be within [0, 1], got 1.5"),
    ("lambda-below-0", "joint_lambda: -0.1\n", "train.joint_lambda: must be within [0, 1], got -0.1"),
    ("bad-choice", "model:\n  model: bert\n", "model.model: must be one of ktup, tup, transh, transe, bpr; got 'bert'"),
    ("not-a-mapping", "- epochs\n- 3\n", "expected a mapping of keys to values at the top level"),
    ("yaml-syntax", "train: {epochs: 3\n", "not valid YAML"),
    ("non-utf8", b"train:\n  seed: \xff\n", "not valid YAML"),
    ("bad-ratios", "data:\n  split_ratios: [0.5, 0.5]\n", "data.split_ratios: expected three non-negative numbers"),
]


@pytest.mark.parametrize("name,text,fragment", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_config(name, text, fragment, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "train", "--config", str(cfg), "--dataset", "synthetic-tiny", "--out", str(out))
    assert rc == 2
    line = one_line_error(err)
    assert fragment in line, line
    if name not in ("wrong-type", "unknown-key", "unknown-section", "lambda-above-1", "lambda-below-0", "bad-choice",
                    "negative-size", "zero-batch", "bool-for-int", "bad-ratios"):
        assert "cfg.yaml" in line, line      # file-level problems name the file
    assert not out.exists()


SET_CASES = [
    ("unknown-key", "epochz=3", "--set: unknown config key 'epochz' (did you mean 'epochs'?)"),
    ("unknown-section", "foo.lr=0.1", "unknown config section 'foo'"),
    ("no-equals", "epochs", "--set 'epochs': expected key=value"),
    ("wrong-type", "batch_size=big", "--set: train.batch_size: expected int, got 'big'"),
    ("float-for-int", "epochs=2.5", "train.epochs: expected int, got 2.5"),
    ("negative", "epochs=-1", "train.epochs: must be >= 0, got -1"),
    ("lambda", "joint_lambda=2", "train.joint_lambda: must be within [0, 1], got 2.0"),
    ("lr-zero", "lr=0", "train.lr: must be > 0, got 0.0"),
    ("ks", "ks=0", "eval.ks: expected a list of positive integers, got [0]"),
]


@pytest.mark.parametrize("name,item,fragment", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set_override(name, item, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "train", "--dataset", "synthetic-tiny", "--out", str(out), "--set", item)
    assert rc == 2
    assert fragment in one_line_error(err)
    assert not out.exists()


def test_bad_config_through_real_cli(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  joint_lambda: 1.5\n")
    p = run_cli("train", "--config", str(cfg), "--dataset", "synthetic-tiny", "--out", str(tmp_path / "run"),
                "--set", "epochs=1")
    assert p.returncode == 2
    assert "train.joint_lambda: must be within [0, 1], got 1.5" in one_line_error(p.stderr)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ bad commands
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch ktup run on the synthetic-tiny preset (in-process, ~2 s)."""
    import torch

    from ktup.config import Config
    from ktup.training import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = Config()
        cfg.apply_overrides(["dataset=synthetic-tiny", "epochs=1", "embedding_size=8", "batch_size=64",
                             "kg_batch_size=64", "kg_eval_max_triples=20"])
        run = train(cfg, out=str(tmp_path_factory.mktemp("rel") / "run"), progress="quiet")
    finally:
        torch.set_num_threads(before)
    return run.path


def _cli_cases(run: Path, tmp: Path) -> list[tuple[str, list[str], str]]:
    user = "u0"
    return [
        ("recommend-no-run", ["recommend", str(tmp / "nope"), "--user", user], "no such run directory"),
        ("recommend-not-a-run", ["recommend", str(tmp), "--user", user], "not a ktup run directory (run.json missing)"),
        ("recommend-unknown-user", ["recommend", str(run), "--user", "nobody"], "unknown user 'nobody'"),
        ("recommend-bad-k", ["recommend", str(run), "--user", "{u}", "-k", "0"], "k"),
        ("explain-unknown-item", ["explain", str(run), "--user", "{u}", "--item", "no-such-item"],
         "unknown item 'no-such-item'"),
        ("explain-unknown-user", ["explain", str(run), "--user", "ghost", "--item", "{i}"], "unknown user 'ghost'"),
        ("evaluate-no-run", ["evaluate", str(tmp / "nope")], "no such run directory"),
        ("evaluate-bad-checkpoint", ["evaluate", str(run), "--checkpoint", "nosuch"], "checkpoint not found"),
        ("train-unknown-dataset", ["train", "--dataset", "no-such-dataset", "--out", str(tmp / "r")],
         "unknown dataset 'no-such-dataset'"),
        ("train-dataset-path-missing", ["train", "--dataset", "./missing/dir", "--out", str(tmp / "r")],
         "dataset path ./missing/dir: no such directory"),
        ("train-resume-missing", ["train", "--resume", str(tmp / "nope")], "no such run directory"),
        ("train-resume-and-model", ["train", "--resume", str(run), "--model", "tup"],
         "--model cannot be combined with --resume"),
        ("datasets-info-unknown", ["datasets", "info", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
        ("export-no-run", ["export", str(tmp / "nope"), "--to", str(tmp / "exp")], "no such run directory"),
        ("serve-no-run", ["serve", str(tmp / "nope"), "--port", "0"], "nope"),
    ]


def _fill(argv: list[str], run: Path) -> list[str]:
    from ktup.training.runs import load_run

    r = load_run(run)
    u = r.dataset.users.tokens[0]
    i = r.dataset.items.tokens[0]
    return [a.replace("{u}", u).replace("{i}", i) for a in argv]


def test_bad_commands(tiny_run, tmp_path, capsys):
    failures = []
    for name, argv, fragment in _cli_cases(tiny_run, tmp_path):
        rc, _, err = run_main(capsys, *_fill(argv, tiny_run))
        try:
            assert rc == 2, rc
            line = one_line_error(err)
            assert fragment in line, line
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "r").exists() and not (tmp_path / "exp").exists()


def test_bad_commands_through_real_cli(tiny_run, tmp_path):
    p = run_cli("recommend", str(tiny_run), "--user", "nobody")
    assert p.returncode == 2, p.stderr
    assert "unknown user 'nobody'" in one_line_error(p.stderr)


def test_export_failure_leaves_nothing(tiny_run, tmp_path, capsys):
    """A damaged checkpoint: export fails with one line and the destination is not created."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:-100])           # truncated
    dest = tmp_path / "exp"
    rc, _, err = run_main(capsys, "export", str(run), "--to", str(dest))
    assert rc == 2
    assert "best.pt: checkpoint is corrupt (checksum mismatch)" in one_line_error(err)
    assert not dest.exists()
