"""Checkpoint files: atomic writes, a checksum so a damaged file is reported, and loading that
never runs code.

File layout: ``MAGIC`` (8 bytes) + sha256 digest of the payload (32 bytes) + payload, where the
payload is what ``torch.save`` writes for a dict of tensors and plain data (dict, list, tuple,
str, int, float, bool, None) — nothing else. It is read back with ``torch.load(weights_only=True)``,
whose unpickler accepts only tensors and those plain types, so a crafted file cannot make loading
run code; the RNG states are stored as tensors and lists for that reason (:func:`rng_state`).
The checksum sits in the same file, so it detects damage, not tampering: safety comes from the
restricted loader.

A kill during a write leaves the previous file intact (temp file in the same directory, fsync,
``os.replace``); a truncated or edited file fails the checksum with a one-line :class:`RunError`.

Format 1 files (``KTUPCKP1``, ktup before this change) stored the numpy RNG state as a numpy
array; they are still read with the same restricted loader plus exactly the numpy globals that
rebuild a plain array, and converted to the current form in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ktup.errors import RunError

MAGIC = b"KTUPCKP2"
MAGIC_V1 = b"KTUPCKP1"   # numpy RNG state as an ndarray; read with a numpy-array allow-list
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
    torch.save(plain_payload(payload), buf)
    body = buf.getvalue()
    return MAGIC + hashlib.sha256(body).digest() + body


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any] | bytes) -> None:
    """Atomically write a checkpoint (a payload dict, or bytes from :func:`encode_checkpoint`)."""
    atomic_write_bytes(path, payload if isinstance(payload, bytes) else encode_checkpoint(payload))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; any damage is a one-line :class:`RunError` naming the file.

    Only tensors and plain data are ever unpickled (``weights_only=True``): a file carrying any
    other object (for example a reduce to ``os.system``) is refused before that object is built.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read checkpoint: {e.strerror}") from None
    magic = raw[:len(MAGIC)]
    if len(raw) < len(MAGIC) + _DIGEST or magic not in (MAGIC, MAGIC_V1):
        raise RunError(f"{path}: not a ktup checkpoint (corrupt or truncated)")
    digest, body = raw[len(MAGIC):len(MAGIC) + _DIGEST], raw[len(MAGIC) + _DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise RunError(f"{path}: checkpoint is corrupt (checksum mismatch); "
                       "resume from another checkpoint or retrain")
    allowed = _numpy_array_globals() if magic == MAGIC_V1 else []
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise RunError(f"{path}: refused to load: the checkpoint holds an object other than tensors and plain "
                       f"data{what}; ktup never unpickles code, so rewrite it from a trusted copy") from None
    except Exception as e:  # noqa: BLE001 - any other failure here means a damaged file
        raise RunError(f"{path}: checkpoint cannot be read: {type(e).__name__}") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not a ktup checkpoint (the payload is not a dict)")
    if magic == MAGIC_V1:
        try:
            state = plain_payload(state)
        except (TypeError, ValueError, KeyError) as e:
            raise RunError(f"{path}: format-1 checkpoint with an unexpected RNG state ({e})") from None
    return state


def _numpy_array_globals() -> list:
    """The globals a pickled plain numpy array needs (format-1 files' numpy RNG state): the
    array rebuild function, ndarray and the dtype classes — none of them runs arbitrary code."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64)]
    return [_reconstruct, np.ndarray, np.dtype, *dtypes]


def plain_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its RNG state (if any) in the loadable form of :func:`rng_state`."""
    rng = payload.get("rng")
    if not isinstance(rng, dict) or not isinstance(rng.get("numpy"), tuple):
        return payload
    return {**payload, "rng": {**rng, "numpy": _numpy_state_plain(rng["numpy"]),
                               "python": _python_state_plain(rng["python"])}}


def _numpy_state_plain(st: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = st
    keys = np.asarray(keys)
    if keys.dtype.kind not in "ui":
        raise ValueError(f"numpy state keys of dtype {keys.dtype}")
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _python_state_plain(st: Any) -> list:
    version, internal, gauss_next = st
    return [int(version), [int(x) for x in internal], None if gauss_next is None else float(gauss_next)]


# ------------------------------------------------------------------ RNG state
def rng_state() -> dict[str, Any]:
    """Global RNG states (torch, numpy, python) for the checkpoint, as tensors and plain data
    (what ``weights_only`` loading accepts)."""
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state_plain(np.random.get_state()),
             "python": _python_state_plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["cached_gaussian"])))
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
