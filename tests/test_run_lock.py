"""Issue 17 item 5: one writer per run directory.

Two ``ktup train --resume RUN`` on one directory used to interleave ``metrics.jsonl``, write two
final records and leave ``final.json`` and ``run.json`` contradicting each other. Now the
writer holds an exclusive lock for the whole training; a second one stops with one line naming
the holder's pid, and a killed holder leaves no stale lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktup.cli import main
from ktup.runs.lock import LOCK_NAME, RunLocked, lock_run_dir

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
TINY = ["--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64", "--set", "threads=1",
        "--set", "patience=0", "--set", "kg_eval_max_triples=20"]


def ktup(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ktup", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, **kw)


def _wait_for_lock(run: Path, pid: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if (run / LOCK_NAME).read_text().strip() == str(pid):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"holder exited early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the holder never took the lock")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lock") / "run"
    rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", "--set", "epochs=2", *TINY])
    assert rc == 0
    return out


def _consistent(run: Path) -> None:
    """metrics.jsonl: epochs 1..n once each then one final line; final.json and run.json agree."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    finals = [r for r in lines if r.get("final")]
    epochs = [r["epoch"] for r in lines if not r.get("final")]
    assert len(finals) == 1 and lines[-1].get("final"), lines
    assert epochs == list(range(1, len(epochs) + 1)), epochs
    final = json.loads((run / "final.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert final["epochs"] == info["epochs_done"] == epochs[-1]
    assert final["best_epoch"] == info["best_epoch"]
    assert {k: v for k, v in final.items() if k != "seconds"} == {k: v for k, v in finals[0].items() if k != "seconds"}


def test_second_resume_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    # a real `ktup train --resume` extending the run far enough to be still running
    a = ktup("train", "--resume", str(run), "--quiet", "--set", "epochs=100000")
    try:
        _wait_for_lock(run, a.pid, a)
        b = subprocess.run([sys.executable, "-m", "ktup", "train", "--resume", str(run), "--quiet", "--set", "epochs=5"],
                           capture_output=True, text=True, env=ENV, timeout=120)
        assert b.returncode == 2, b
        err = [x for x in b.stderr.splitlines() if x.strip()]
        assert len(err) == 1 and err[0].startswith("ktup: error: "), b.stderr
        assert f"another ktup process (pid {a.pid}) is writing this run" in err[0]
        assert a.poll() is None                      # the holder is untouched
    finally:
        a.send_signal(signal.SIGKILL)                # killed mid-training: the kernel drops its lock
        a.wait(timeout=60)
    # no stale lock: the next resume takes over and finishes a consistent run
    c = subprocess.run([sys.executable, "-m", "ktup", "train", "--resume", str(run), "--quiet", "--set", "epochs=4"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    if c.returncode != 0 and "already finished" in c.stderr:   # the killed holder had passed epoch 4
        c = subprocess.run([sys.executable, "-m", "ktup", "train", "--resume", str(run), "--quiet", "--set",
                            f"epochs={json.loads((run / 'run.json').read_text())['epochs_done'] + 1}"],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert c.returncode == 0, c.stderr
    _consistent(run)


def test_a_new_run_into_a_locked_directory_is_refused_and_nothing_is_removed(finished_run, tmp_path):
    """A holder process (real, separate) owns the directory; `train --out` there must not touch it."""
    d = tmp_path / "busy"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from ktup.runs.lock import lock_run_dir; "
                               f"l = lock_run_dir({str(d)!r}); print('locked', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = subprocess.run([sys.executable, "-m", "ktup", "train", "--dataset", "synthetic-tiny", "--out", str(d),
                            "--quiet", "--set", "epochs=1", *TINY], capture_output=True, text=True, env=ENV, timeout=120)
        assert p.returncode == 2 and f"(pid {holder.pid}) is writing this run" in p.stderr, p.stderr
        assert sorted(x.name for x in d.iterdir()) == sorted([LOCK_NAME, "checkpoints", "keep.txt", "plots"])
        assert not (d / "run.json").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with lock_run_dir(d) as lock:                    # freed by the holder's death
        assert lock.held


def test_lock_is_released_after_training_and_after_a_failure(finished_run, tmp_path):
    import shutil

    from ktup.config import Config
    from ktup.training import train

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    cfg = Config.from_yaml(run / "config.yaml", saved=True)
    cfg.train.epochs = 3
    train(cfg, resume=str(run), progress="quiet")
    lock_run_dir(run).release()                      # free again after a normal end
    cfg.train.epochs = 3
    with pytest.raises(Exception, match="already finished"):
        train(cfg, resume=str(run), progress="quiet")
    lock_run_dir(run).release()                      # and after a refused resume


def test_in_process_second_lock_raises_run_locked(tmp_path):
    with lock_run_dir(tmp_path):
        with pytest.raises(RunLocked, match=rf"pid {os.getpid()}\)"):
            lock_run_dir(tmp_path)
