"""Checkpoint files: atomic writes and a checksum so a damaged file is reported, never loaded.

File layout: ``MAGIC`` (8 bytes) + sha256 digest of the payload (32 bytes) + payload, where the
payload is what ``torch.save`` writes for a plain dict. A kill during a write leaves the previous
file intact (temp file in the same directory, fsync, ``os.replace``); a truncated or edited file
fails the checksum with a one-line :class:`RunError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ktup.errors import RunError

MAGIC = b"KTUPCKP1"
_DIGEST = 32


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, read-only, quota: one clear line, the old file untouched
        try:
            tmp.unlink()
        except OSError:
            pass
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        raise RunError(f"{path}: cannot write ({e.strerror or e}){kept}") from None
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def keep_previous(path: str | os.PathLike, prev: str | os.PathLike) -> None:
    """Make ``prev`` a copy of ``path`` (a hard link when possible) before ``path`` is replaced,
    so a damaged newest checkpoint still leaves the one before it to resume from."""
    path, prev = Path(path), Path(prev)
    if not path.exists():
        return
    tmp = prev.with_name(f".{prev.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links on this file system
            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunError(f"{prev}: cannot write ({e.strerror or e})") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def encode_checkpoint(payload: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file (serialise once, write to several paths)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return MAGIC + hashlib.sha256(body).digest() + body


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any] | bytes) -> None:
    """Atomically write a checkpoint (a payload dict, or bytes from :func:`encode_checkpoint`)."""
    atomic_write_bytes(path, payload if isinstance(payload, bytes) else encode_checkpoint(payload))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; any damage is a one-line :class:`RunError` naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read checkpoint: {e.strerror}") from None
    if len(raw) < len(MAGIC) + _DIGEST or not raw.startswith(MAGIC):
        raise RunError(f"{path}: not a ktup checkpoint (corrupt or truncated)")
    digest, body = raw[len(MAGIC):len(MAGIC) + _DIGEST], raw[len(MAGIC) + _DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise RunError(f"{path}: checkpoint is corrupt (checksum mismatch); "
                       "resume from another checkpoint or retrain")
    try:
        # Our own verified file: it also holds numpy RNG state, which weights_only rejects.
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
        raise RunError(f"{path}: checkpoint cannot be read: {type(e).__name__}") from None


# ------------------------------------------------------------------ RNG state
def rng_state() -> dict[str, Any]:
    """Global RNG states (torch, numpy, python) for the checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
