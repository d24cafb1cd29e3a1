"""SIGKILL ``ktup train`` at random moments; every resume must reach the uninterrupted result.

Each trial starts ``python -m ktup train --dataset synthetic-tiny ...`` in a subprocess, kills
it with SIGKILL at a randomised moment (during an epoch, during evaluation, around a checkpoint
write, or the instant a ``checkpoints/.*.tmp-*`` file appears), then resumes it with
``ktup train --resume RUN`` (in this process, through ``ktup.cli.main``) and compares
``final.json`` and the best checkpoint's weights with an uninterrupted run of the same config.

    python benchmarks/kill_trials.py                 # 12 trials, table on stdout
    python benchmarks/kill_trials.py --trials 3 --json out.json

The CI test (``tests/test_reliability_faults.py``) runs :func:`run_trials` with 2 trials.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

SETTINGS = ["epochs=8", "embedding_size=16", "batch_size=64", "kg_batch_size=64", "lr=0.01", "seed=5",
            "patience=0", "kg_eval_max_triples=100"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _sets() -> list[str]:
    return [x for s in SETTINGS for x in ("--set", s)]


def reference(root: Path) -> dict[str, Any]:
    """The uninterrupted run, in this process on one thread (same numbers as the subprocess)."""
    import torch

    from ktup.cli import main

    torch.set_num_threads(1)
    out = root / "reference"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", *_sets()])
    assert rc == 0, "reference run failed"
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in recs if not r.get("final")]
    return {"path": out, "final": json.loads((out / "final.json").read_text()),
            "epoch_seconds": sum(r["seconds"] for r in epochs) / len(epochs),
            "train_seconds": sum(r["train_seconds"] for r in epochs) / len(epochs)}


def _n_epochs_logged(out: Path) -> int:
    p = out / "metrics.jsonl"
    if not p.exists():
        return 0
    n = 0
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            n += not json.loads(line).get("final")
        except json.JSONDecodeError:
            pass
    return n


def _temps(out: Path) -> list[str]:
    d = out / "checkpoints"
    try:
        return [n for n in os.listdir(d) if ".tmp-" in n]
    except FileNotFoundError:
        return []


def kill_once(out: Path, trigger: dict[str, Any], timeout: float = 180.0) -> dict[str, Any]:
    """Start a training subprocess and SIGKILL it at ``trigger``; describe the moment."""
    cmd = [sys.executable, "-m", "ktup", "train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", *_sets()]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    moment: dict[str, Any] = {}
    try:
        if trigger["kind"] == "tmp":          # the instant a checkpoint temp file exists
            while proc.poll() is None and time.monotonic() < deadline:
                t = _temps(out)
                if t and _n_epochs_logged(out) >= trigger["after_epoch"]:
                    moment["temp"] = t[0]
                    break
                time.sleep(0.0003)   # poll often, but leave the CPU to the run being watched
        else:                                 # `delay` seconds after epoch `after_epoch` was logged
            while proc.poll() is None and time.monotonic() < deadline:
                if (out / "run.json").exists() and _n_epochs_logged(out) >= trigger["after_epoch"]:
                    break
                time.sleep(0.002)
            time.sleep(trigger["delay"])
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            moment["temps_seen"] = _temps(out)
        else:
            moment["exited"] = proc.returncode
    finally:
        proc.wait()
        proc.stderr.close()
    moment["epochs_logged"] = _n_epochs_logged(out)
    return moment


def _status(out: Path) -> Optional[str]:
    try:
        return json.loads((out / "run.json").read_text())["status"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def resume(out: Path) -> tuple[int, str]:
    from ktup.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["train", "--resume", str(out), "--quiet"])
    return rc, err.getvalue().strip()


def same_result(out: Path, ref: dict[str, Any]) -> tuple[bool, str]:
    import torch

    from ktup.runs.checkpoint import load_checkpoint

    try:
        final = json.loads((out / "final.json").read_text())
    except FileNotFoundError:
        return False, "no final.json"
    if (out / "config.yaml").read_text() != (ref["path"] / "config.yaml").read_text():
        return False, "config.yaml differs from the reference's (were defaults edited during the trials?)"
    for key in ("test", "kg_test", "best_epoch", "epochs", "steps"):
        if final.get(key) != ref["final"].get(key):
            return False, f"final.json {key} differs"
    a = load_checkpoint(out / "checkpoints" / "best.pt")["model"]
    b = load_checkpoint(ref["path"] / "checkpoints" / "best.pt")["model"]
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
        return False, "best.pt weights differ"
    return True, "identical"


def trial(root: Path, k: int, trigger: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    out = root / f"trial-{k:02d}"
    t0 = time.perf_counter()
    moment = kill_once(out, trigger)
    status = _status(out)
    row: dict[str, Any] = {"trial": k, "trigger": _describe(trigger, ref), "epochs_logged": moment["epochs_logged"],
                           "last_pt_epoch": _ckpt_epoch(out), "temp_at_kill": bool(moment.get("temp") or moment.get("temps_seen")),
                           "status_at_kill": status or "no run.json"}
    row["killed_in"] = _phase(row, trigger, ref)
    if "exited" in moment:
        row["note"] = f"process ended first (rc {moment['exited']})"
    if status is None:      # killed before the run directory was complete: start it again
        shutil.rmtree(out, ignore_errors=True)
        moment2 = kill_once(out, {"kind": "delay", "after_epoch": 10 ** 6, "delay": 0})  # runs to the end
        row["resume"] = "restarted (killed before run.json)" if "exited" in moment2 else "?"
    elif status == "finished":
        row["resume"] = "not needed (finished)"
    else:
        rc, err = resume(out)
        row["resume"] = "ok" if rc == 0 else f"FAILED rc={rc}: {err.splitlines()[-1] if err else ''}"
        if "restarting from epoch 0" in err:
            row["resume"] += " (from epoch 0)"
    ok, why = same_result(out, ref)
    row["same_result"] = ok
    row["detail"] = why
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _ckpt_epoch(out: Path) -> Optional[int]:
    from ktup.errors import RunError
    from ktup.runs.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(out / "checkpoints" / "last.pt")["epoch"])
    except RunError:
        return None


def _phase(row: dict[str, Any], trigger: dict[str, Any], ref: dict[str, Any]) -> str:
    """What the process was doing when it died, from what it left on disk."""
    if row["status_at_kill"] == "finished":
        return "after the end"
    if row["temp_at_kill"]:
        return "checkpoint write (temp file present)"
    logged, ck = row["epochs_logged"], row["last_pt_epoch"] or 0
    if ck < logged:
        return f"epoch {logged}: between metrics line and last.pt"
    if logged == 0 and row["last_pt_epoch"] is None:
        return "epoch 1 (before any checkpoint)"
    epochs = int(next(x for x in SETTINGS if x.startswith("epochs=")).split("=")[1])
    if logged >= epochs:
        return "final test evaluation"
    return f"epoch {logged + 1}: training or validation"


def _describe(trigger: dict[str, Any], ref: dict[str, Any]) -> str:
    if trigger["kind"] == "tmp":
        return f"checkpoint temp file appears (after epoch {trigger['after_epoch']})"
    return f"{trigger['delay'] * 1000:.0f} ms after epoch {trigger['after_epoch']} was logged"


def make_triggers(n: int, seed: int, ref: dict[str, Any], epochs: int = 8) -> list[dict[str, Any]]:
    """Spread kills over epochs; some land in evaluation/checkpoint writes, some on a temp file."""
    rng = random.Random(seed)
    out = []
    span = max(ref["epoch_seconds"], 0.02)
    for k in range(n):
        if k % 4 == 3:
            out.append({"kind": "tmp", "after_epoch": rng.randrange(0, epochs - 1)})
        else:
            # the whole epoch, with extra weight on its tail (evaluation and checkpoint writes)
            # (a subprocess on a busy machine runs slower than the in-process reference: stretch)
            frac = rng.uniform(0, 3.0) if k % 2 == 0 else rng.uniform(ref["train_seconds"] / span, 1.0)
            out.append({"kind": "delay", "after_epoch": rng.randrange(0, epochs), "delay": round(frac * span, 4)})
    return out


def run_trials(n: int = 12, seed: int = 0, workdir: Optional[Path] = None) -> list[dict[str, Any]]:
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ktup-kill-"))
    root.mkdir(parents=True, exist_ok=True)
    ref = reference(root)
    rows = [trial(root, k, trig, ref) for k, trig in enumerate(make_triggers(n, seed, ref))]
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["trial", "trigger", "killed_in", "epochs_logged", "last_pt_epoch", "resume", "same_result", "seconds"]
    data = [[str(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols)), "  ".join("-" * x for x in w)]
    lines += ["  ".join(d[i].ljust(w[i]) for i in range(len(cols))) for d in data]
    ok = sum(bool(r["same_result"]) for r in rows)
    lines.append(f"{ok}/{len(rows)} trials reached the uninterrupted result")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the run directories here")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    a = ap.parse_args(argv)
    rows = run_trials(a.trials, a.seed, a.workdir)
    print(format_table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["same_result"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
