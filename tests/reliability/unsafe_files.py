"""Crafted hostile files for the "loading never runs code" checks (tests and the reliability battery).

:func:`plant_malicious_checkpoints` rewrites a run's checkpoints so their pickle carries a
``__reduce__`` to ``os.system`` that would create ``marker``; the checksum is recomputed, so
only the loader itself can refuse them. :func:`entry_points` lists every way a user loads a run
or an export; each must end with a one-line refusal and leave ``marker`` unwritten.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch


class Payload:
    """Unpickling this calls ``os.system(command)``: what an attacker would plant."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hostile_bytes(marker: Path, magic: bytes = b"KTUPCKP2", state: dict | None = None) -> bytes:
    """A checkpoint file with a valid header and checksum whose payload runs ``touch marker``."""
    payload = dict(state or {})
    payload["model"] = {**payload.get("model", {}), "evil": Payload(f"touch {shlex.quote(str(marker))}")}
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return magic + hashlib.sha256(body).digest() + body


def plant_malicious_checkpoints(run: Path, dest: Path, marker: Path, magic: bytes = b"KTUPCKP2") -> Path:
    """A copy of ``run`` at ``dest`` whose best/last/prev checkpoints are hostile."""
    shutil.copytree(run, dest)
    data = hostile_bytes(marker, magic)
    ck = dest / "checkpoints"
    for name in ("best.pt", "last.pt", "prev.pt"):
        (ck / name).write_bytes(data)
    return dest


def plant_malicious_export(export: Path, dest: Path, marker: Path) -> Path:
    """A copy of an export folder whose ``extra.npz`` holds a pickled hostile object array."""
    shutil.copytree(export, dest)
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(f"touch {shlex.quote(str(marker))}")
    with open(dest / "extra.npz", "wb") as f:
        np.savez(f, evil=arr)
    return dest


def _cli(*argv: str, timeout: float = 120) -> tuple[int, str]:
    """``python -m ktup ARGV`` in a subprocess (so a server that wrongly starts is killed)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        p = subprocess.run([sys.executable, "-m", "ktup", *argv], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return -1, "timed out (the command went on as if the file were fine)"
    return p.returncode, p.stderr


def _py(fn: Callable[[], object]) -> tuple[int, str]:
    from ktup.errors import KtupError

    try:
        fn()
    except KtupError as e:
        return 2, f"ktup: error: {e}\n"
    return 0, ""


def entry_points(bad_run: Path, user: str, tmp: Path) -> dict[str, Callable[[], tuple[int, str]]]:
    """name → a call loading ``bad_run`` through one entry point: ``(exit code, stderr)``."""
    from ktup.explain import Recommender
    from ktup.serving.loading import load_recommender
    from ktup.runs.checkpoint import load_checkpoint
    from ktup.runs import load_run

    return {
        "ktup evaluate": lambda: _cli("evaluate", str(bad_run)),
        "ktup recommend": lambda: _cli("recommend", str(bad_run), "--user", user),
        "ktup export": lambda: _cli("export", str(bad_run), "--to", str(tmp / "exp-from-bad")),
        "ktup serve RUN": lambda: _cli("serve", str(bad_run), "--port", "0", timeout=60),
        "ktup train --resume": lambda: _cli("train", "--resume", str(bad_run), "--quiet"),
        "ktup train --init-from": lambda: _cli("train", "--dataset", "synthetic-tiny", "--model", "ktup", "--quiet",
                                               "--init-from", str(bad_run), "--out", str(tmp / "init-run"),
                                               "--set", "epochs=1", "--set", "embedding_size=16"),
        "ktup evaluate --checkpoint last": lambda: _cli("evaluate", str(bad_run), "--checkpoint", "last"),
        "Recommender.load": lambda: _py(lambda: Recommender.load(bad_run)),
        "load_recommender": lambda: _py(lambda: load_recommender(bad_run)),
        "load_run": lambda: _py(lambda: load_run(bad_run, checkpoint="last")),
        "load_checkpoint": lambda: _py(lambda: load_checkpoint(bad_run / "checkpoints" / "prev.pt")),
    }
