"""Resume: a run killed with SIGKILL and resumed ends with exactly the numbers of an
uninterrupted run; finished runs can be extended; a resume cannot silently change the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ktup.cli import main
from ktup.config import Config
from ktup.errors import ConfigError, RunError
from ktup.training import train
from ktup.runs.checkpoint import load_checkpoint
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)

CLI_SETTINGS = ["epochs=12", "batch_size=64", "kg_batch_size=64", "embedding_size=16", "lr=0.01", "seed=5",
                "patience=0", "kg_eval_max_triples=200"]


def _comparable(path: Path) -> list[dict]:
    """metrics.jsonl without timings and run names."""
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if "seconds" not in k and k not in ("run_id", "run_dir")})
    return out


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ktup", "train", *args]


def test_sigkill_then_resume_reaches_the_uninterrupted_result(tmp_path, capsys):
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    sets = [x for s in CLI_SETTINGS for x in ("--set", s)]
    proc = subprocess.Popen(_cli("--dataset", "synthetic-tiny", "--model", "ktup", "--out", str(killed), "--quiet",
                                 *sets), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    epoch_at_kill = load_checkpoint(last)["epoch"]
    assert 1 <= epoch_at_kill < 12

    # resume through the same CLI code (in this process, to spare a second interpreter start-up)
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test metrics, protocol recbole" in printed and str(killed) in printed

    # the same run, never interrupted (in this process, also on one thread)
    clean = train(Config.from_yaml(killed / "config.yaml"), out=str(tmp_path / "clean"), progress="quiet")
    assert json.loads((killed / "final.json").read_text())["test"] == clean.final["test"]
    assert json.loads((killed / "final.json").read_text())["kg_test"] == clean.final["kg_test"]
    assert _comparable(killed / "metrics.jsonl") == _comparable(clean.path / "metrics.jsonl")
    _same_weights(killed / "checkpoints" / "best.pt", clean.path / "checkpoints" / "best.pt")
    _same_weights(killed / "checkpoints" / "last.pt", clean.path / "checkpoints" / "last.pt")
    assert json.loads((killed / "run.json").read_text())["status"] == "finished"


def test_extending_a_finished_run_equals_training_longer(tmp_path):
    ds = tiny_dataset()
    short = train(tiny_config("ktup", epochs=2, patience=0), dataset=ds, out=str(tmp_path / "a"), progress="quiet")
    assert main(["train", "--resume", str(short.path), "--set", "epochs=4", "--quiet"]) == 0
    long = train(tiny_config("ktup", epochs=4, patience=0), dataset=tiny_dataset(), out=str(tmp_path / "b"),
                 progress="quiet")
    assert _comparable(short.path / "metrics.jsonl") == _comparable(long.path / "metrics.jsonl")
    _same_weights(short.path / "checkpoints" / "last.pt", long.path / "checkpoints" / "last.pt")


def test_resume_in_python_after_a_partial_run(tmp_path):
    """A run cut after epoch 1 resumes to the full run's numbers (hard induction: Gumbel noise
    comes from the global RNG, which each epoch reseeds)."""
    def cfg(epochs):
        c = tiny_config("ktup", epochs=epochs, schedule="sum")
        c.model.induction = "hard"
        return c

    full = train(cfg(3), dataset=tiny_dataset(), out=str(tmp_path / "full"), progress="quiet")
    part = train(cfg(1), dataset=tiny_dataset(), out=str(tmp_path / "part"), progress="quiet")
    info = json.loads((part.path / "run.json").read_text())
    info["status"] = "running"
    (part.path / "run.json").write_text(json.dumps(info))
    run = train(cfg(3), resume=str(part.path), progress="quiet")
    assert run.final["test"] == full.final["test"]
    assert _comparable(part.path / "metrics.jsonl") == _comparable(full.path / "metrics.jsonl")


def test_resume_refuses_to_change_the_run(tmp_path):
    run = train(tiny_config("bpr", epochs=1), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    with pytest.raises(ConfigError, match="cannot change train.lr"):
        train(tiny_config("bpr", epochs=3, lr=0.5), resume=str(run.path), progress="quiet")
    with pytest.raises(ConfigError, match="already finished 1 epochs"):
        train(None, resume=str(run.path), progress="quiet")


def test_resume_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ktup: error:") and "no such run directory" in err and "\n" not in err
    run = train(tiny_config("bpr", epochs=1), dataset=tiny_dataset(), out=str(tmp_path / "r"), progress="quiet")
    for f in (run.path / "checkpoints").glob("*.pt"):  # every checkpoint damaged: no fallback left
        f.write_bytes(b"KTUPCKP1" + b"\0" * 40)
    with pytest.raises(RunError, match="corrupt"):
        train(None, resume=str(run.path), progress="quiet")
    for f in (run.path / "checkpoints").glob("*.pt"):  # no checkpoint at all: the run starts over
        f.unlink()
    assert train(None, resume=str(run.path), progress="quiet").info["epochs_done"] == 1
    assert main(["train", "--resume", str(run.path), "--model", "tup"]) == 2
    assert "cannot be combined with --resume" in capsys.readouterr().err
