"""Reliability, faults: killed runs, damaged checkpoints, diverging training, an unwritable or
full disk, and an HTTP service under concurrent and malformed requests. Nothing is lost: every
failure is one clear line, the last good checkpoint survives and a resume reaches the result of
an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ktup.cli import main
from ktup.errors import KtupError, RunError
from ktup.training import train
from ktup.runs.checkpoint import load_checkpoint
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _final(run: Path) -> dict:
    f = json.loads((run / "final.json").read_text())
    return {k: f.get(k) for k in ("test", "kg_test", "best_epoch", "epochs", "steps")}


def _weights(f: Path) -> dict:
    return load_checkpoint(f)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """An uninterrupted 3-epoch ktup run on the tiny dataset (the reference)."""
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        run = train(tiny_config("ktup", epochs=3, patience=0), dataset=tiny_dataset(),
                    out=str(tmp_path_factory.mktemp("faults") / "ref"), progress="quiet")
    return run.path


# ------------------------------------------------------------------ killed runs
def test_sigkill_trials_resume_to_the_uninterrupted_result(tmp_path):
    """The CI-sized variant of benchmarks/kill_trials.py: a kill in mid-epoch and one on a checkpoint temp file."""
    sys.path.insert(0, str(BENCH))
    try:
        import kill_trials
    finally:
        sys.path.remove(str(BENCH))
    ref = kill_trials.reference(tmp_path)
    triggers = [{"kind": "delay", "after_epoch": 2, "delay": 0.5 * ref["epoch_seconds"]},
                {"kind": "tmp", "after_epoch": 4}]
    rows = [kill_trials.trial(tmp_path, k, t, ref) for k, t in enumerate(triggers)]
    print(kill_trials.format_table(rows))
    for r in rows:
        assert r["same_result"], r
        assert r["resume"].startswith(("ok", "not needed")), r
    assert rows[0]["status_at_kill"] == "running", rows[0]     # really killed mid-run
    # (the temp-file trigger may miss every write on a very fast disk; then the run just finishes)
    assert not list(tmp_path.glob("trial-*/checkpoints/.*.tmp-*")), "stale temp files survived the resume"


# ------------------------------------------------------------------ damaged checkpoints
DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "flipped-byte": lambda b: b[:-50] + bytes([b[-50] ^ 0xFF]) + b[-49:],
    "empty": lambda b: b"",
    "garbage": lambda b: os.urandom(len(b)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_last_checkpoint_falls_back_and_resumes(damage, finished_run, tmp_path, capsys):
    """As if killed after the last epoch's checkpoint but before the end, with last.pt damaged."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    (run / "final.json").unlink()
    last = run / "checkpoints" / "last.pt"
    assert (run / "checkpoints" / "prev.pt").exists(), "the previous last.pt is kept"
    last.write_bytes(DAMAGE[damage](last.read_bytes()))
    with pytest.raises(RunError, match="last.pt: "):
        load_checkpoint(last)
    capsys.readouterr()
    resumed = train(None, resume=str(run), progress="quiet")
    err = capsys.readouterr().err
    assert re.search(r"ktup: warning: .*last\.pt: .*(corrupt|truncated).*; resuming from (prev|best)\.pt \(epoch \d\)", err), err
    assert "resuming from" in (run / "train.log").read_text()
    assert resumed.info["status"] == "finished"
    assert _final(run) == _final(finished_run)
    _assert_same_weights(run / "checkpoints" / "best.pt", finished_run / "checkpoints" / "best.pt")
    _assert_same_weights(run / "checkpoints" / "last.pt", finished_run / "checkpoints" / "last.pt")


def test_last_and_prev_damaged_falls_back_to_best(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    for name in ("last.pt", "prev.pt"):
        f = run / "checkpoints" / name
        f.write_bytes(f.read_bytes()[:-7])
    best_epoch = load_checkpoint(run / "checkpoints" / "best.pt")["epoch"]
    train(None, resume=str(run), progress="quiet")
    err = capsys.readouterr().err
    assert f"resuming from best.pt (epoch {best_epoch})" in err, err
    assert err.count("ktup: warning:") == 2                   # one line per damaged file
    assert _final(run) == _final(finished_run)
    _assert_same_weights(run / "checkpoints" / "last.pt", finished_run / "checkpoints" / "last.pt")


def test_killed_before_the_first_checkpoint_restarts_from_epoch_0(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running", "epochs_done": 0}))
    (run / "final.json").unlink()
    for f in (run / "checkpoints").glob("*.pt"):
        f.unlink()
    (run / "checkpoints" / ".last.pt.tmp-12345").write_bytes(b"partial")   # what a kill mid-write leaves
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "restarting from epoch 0" in capsys.readouterr().err
    assert _final(run) == _final(finished_run)
    _assert_same_weights(run / "checkpoints" / "best.pt", finished_run / "checkpoints" / "best.pt")
    assert not list((run / "checkpoints").glob(".*.tmp-*"))


def test_every_checkpoint_damaged_is_one_clear_error(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for f in (run / "checkpoints").glob("*.pt"):
        f.write_bytes(f.read_bytes()[:100])
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "no intact checkpoint to resume from" in err and "last.pt: checkpoint is corrupt" in err


# ------------------------------------------------------------------ non-finite loss
def test_non_finite_loss_stops_naming_step_and_checkpoint(tmp_path, monkeypatch, capsys):
    from ktup.models import MODELS

    cls = MODELS["ktup"]
    real = cls.rec_loss
    calls = {"n": 0}

    def poisoned(self, *a, **k):      # finite for a while, then NaN (epoch 2)
        calls["n"] += 1
        loss = real(self, *a, **k)
        return loss * float("nan") if calls["n"] > 12 else loss

    monkeypatch.setattr(cls, "rec_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(KtupError) as ei:
        train(tiny_config("ktup", epochs=4, patience=0), dataset=tiny_dataset(), out=str(out), progress="quiet")
    msg = str(ei.value)
    m = re.search(r"non-finite recommendation loss at epoch (\d+), step (\d+) .*last good checkpoint (\S+) \(epoch (\d+)\) kept", msg)
    assert m, msg
    epoch, ckpt_epoch = int(m.group(1)), int(m.group(4))
    assert epoch >= 2 and ckpt_epoch == epoch - 1 and m.group(3).endswith("last.pt")
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == ckpt_epoch
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "non-finite" in info["error"]


def test_huge_learning_rate_fails_cleanly_through_cli(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", "--set", "epochs=3",
               "--set", "lr=1e38", "--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64",
               "--set", "optimizer=sgd"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err, err
    assert "non-finite" in err and "training stopped" in err, err
    for f in (out / "checkpoints").glob("*.pt"):          # whatever was kept holds no NaN
        st = load_checkpoint(f)["model"]
        assert all(bool(torch.isfinite(v).all()) for v in st.values() if v.is_floating_point()), f
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


# ------------------------------------------------------------------ unwritable and full disks
def test_output_under_a_regular_file_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(blocker / "run"), "--quiet", "--set", "epochs=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert f"{blocker / 'run'}: output directory is not writable (Not a directory)" in err, err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_output_in_proc_fails_before_training(capsys):
    rc = main(["train", "--dataset", "synthetic-tiny", "--out", "/proc/ktup-run", "--quiet", "--set", "epochs=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "output directory is not writable" in err, err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(ro / "run"), "--quiet", "--set", "epochs=1"])
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "output directory is not writable" in err


class _FullDisk:
    """``open`` for ktup.runs.checkpoint: writing a last.pt temp file fails with ENOSPC from
    the ``fail_from``-th time on (after part of the data reached the disk)."""

    def __init__(self, fail_from: int):
        self.fail_from, self.n = fail_from, 0

    def __call__(self, file, mode="r", *a, **k):
        f = open(file, mode, *a, **k)
        if "w" in mode and ".last.pt.tmp-" in str(file):
            self.n += 1
            if self.n >= self.fail_from:
                real_write = f.write

                def write(data):
                    real_write(data[: len(data) // 3])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                f.write = write
        return f


def test_full_disk_keeps_previous_checkpoint_and_resumes(finished_run, tmp_path, monkeypatch, capsys):
    import ktup.runs.checkpoint as ck

    out = tmp_path / "run"
    monkeypatch.setattr(ck, "open", _FullDisk(fail_from=2), raising=False)
    with pytest.raises(RunError) as ei:
        train(tiny_config("ktup", epochs=3, patience=0), dataset=tiny_dataset(), out=str(out), progress="quiet")
    msg = str(ei.value)
    assert "last.pt: cannot write (No space left on device); the previous last.pt is kept" in msg, msg
    assert "\n" not in msg
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1     # epoch 1 survived intact
    assert not list((out / "checkpoints").glob(".*.tmp-*")), "the partial temp file is removed"
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]
    monkeypatch.undo()                                                        # space freed
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert _final(out) == _final(finished_run)
    _assert_same_weights(out / "checkpoints" / "best.pt", finished_run / "checkpoints" / "best.pt")


def test_full_disk_through_cli_is_one_line(tmp_path, monkeypatch, capsys):
    import ktup.runs.checkpoint as ck

    monkeypatch.setattr(ck, "open", _FullDisk(fail_from=1), raising=False)
    rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(tmp_path / "run"), "--quiet",
               "--set", "epochs=2", "--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err, err
    assert "No space left on device" in err


# ------------------------------------------------------------------ HTTP service
def test_http_service_under_load_and_malformed_requests(finished_run):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")  # noqa: F841
    from ktup.explain import Recommender
    from reliability.http_battery import serve_and_battery

    rec = Recommender.load(finished_run)
    res = serve_and_battery(rec, rounds=2, threads=6, deadline_s=60)
    assert res["problems"] == [], res["problems"]
    assert res["alive"]
    assert not any(k.endswith("5xx") for k in res["counts"]), res["counts"]
    assert res["counts"].get("good -> 2xx", 0) > 0 and res["counts"].get("bad -> 4xx", 0) > 0
