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

import pytest

from ktup.cli import main
from ktup.config import DataConfig
from ktup.data import load_dataset
from ktup.errors import KtupError
from reliability.corpus import (CASES, SET_CASES, VALID, YAML_CASES, YAML_FILE_LEVEL, cli_cases, fill_ids,
                               write_files)

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


SUBPROCESS_CASES = ["kt-user-not-in-map"]  # every case also goes through main() below


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


@pytest.mark.parametrize("name,text,fragment", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_config(name, text, fragment, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "train", "--config", str(cfg), "--dataset", "synthetic-tiny", "--out", str(out))
    assert rc == 2
    line = one_line_error(err)
    assert fragment in line, line
    if name in YAML_FILE_LEVEL:
        assert "cfg.yaml" in line, line      # file-level problems name the file
    assert not out.exists()




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


def test_bad_commands(tiny_run, tmp_path, capsys):
    failures = []
    for name, argv, fragment in cli_cases(tiny_run, tmp_path):
        rc, _, err = run_main(capsys, *fill_ids(argv, tiny_run))
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
